"""The ``tensorrt`` engine backend: one serialized TensorRT engine per exported ONNX graph.

Only ``build_tensorrt_engines`` (and ``require_tensorrt``) import ``tensorrt``; everything
else here (settings, optimisation-profile shapes, the fp16 ONNX variant) is plain Python,
ONNX and ONNX Runtime, so it is importable and tested on machines without a GPU.

Per graph: parse the ONNX file with ``trt.OnnxParser.parse_from_file``, add one
optimisation profile (min/opt/max batch and sequence from the build flags), share one
timing cache across the graphs (read from and written back to a file), keep the engine on
one CUDA stream (``max_aux_streams = 0``, which CUDA graphs and graph conditionals need)
and write ``<graph>.<precision>.plan`` next to the ONNX file; the manifest records it as
``GraphSpec.engine``.

Precision: TensorRT 11 networks are strongly typed (the FP16/BF16 builder flags are gone),
so reduced precision is decided in the ONNX. ``--precision fp16`` builds from an fp16
variant of each graph (``fp16_variant``): float weights and activations in fp16 except
LayerNormalization, which stays fp32, and fp32 graph inputs and outputs, so the manifest's
tensor specs and the hidden states passed between engines stay fp32. On TensorRT 10 the
network is created with the STRONGLY_TYPED flag for the same behaviour; fp32 builds also
clear the TF32 flag where it exists, so fp32 means fp32.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from exporter.backends import BackendUnavailableError
from runtime.integrity import sha256_file
from runtime.manifest import BuildError, FileRef, GraphSpec, TensorSpec

__all__ = [
    "ENGINE_SUFFIX",
    "PRECISIONS",
    "TIMING_CACHE_FILE",
    "Profile",
    "TensorRTSettings",
    "build_tensorrt_engines",
    "engine_file",
    "fp16_variant",
    "profile_shapes",
    "require_tensorrt",
    "settings_record",
]

PRECISIONS = ("fp32", "fp16")
ENGINE_SUFFIX = ".plan"
TIMING_CACHE_FILE = "tensorrt-timing.cache"  # written into the build folder unless --timing-cache names one
BATCH, SEQ = "batch", "sequence"
FP16_KEEP_FP32_OPS = ("LayerNormalization",)  # fp16 LayerNorm risks overflow in the variance
MISSING_MESSAGE = (
    "the tensorrt backend needs NVIDIA TensorRT's Python package (`import tensorrt` failed). Install TensorRT "
    "10+ for your CUDA version from NVIDIA, or build with --backend onnxruntime"
)


def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module (10+), or ``BackendUnavailableError`` saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(MISSING_MESSAGE) from None
    major = str(getattr(tensorrt, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 10:
        raise BackendUnavailableError(
            f"the tensorrt backend needs TensorRT 10 or newer, found {getattr(tensorrt, '__version__', '?')}"
        )
    return tensorrt


# --------------------------------------------------------------------------- settings and profiles


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: (min, opt, max) for the batch and the sequence axes."""

    batch: tuple[int, int, int]
    seq: tuple[int, int, int]

    def __post_init__(self) -> None:
        for axis, (low, opt, high) in ((BATCH, self.batch), (SEQ, self.seq)):
            values = (low, opt, high)
            if any(isinstance(v, bool) or not isinstance(v, int) for v in values) or not 1 <= low <= opt <= high:
                raise ValueError(f"{axis} profile: expected integers 1 <= min <= opt <= max, found {values}")

    def to_dict(self) -> dict[str, list[int]]:
        return {BATCH: list(self.batch), SEQ: list(self.seq)}


@dataclass(frozen=True)
class TensorRTSettings:
    """The build flags of the tensorrt backend. ``None`` opt values mean "= max"; ``max_seq=None``
    means the build's ``max_seq_len``."""

    precision: str = "fp32"
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = 32
    min_seq: int = 1
    opt_seq: int | None = None
    max_seq: int | None = None
    workspace_mib: int = 2048
    timing_cache: str | None = None  # a file to read and update; default: a fresh cache saved in the build

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, found {self.precision!r}")
        for what, value in (("min batch", self.min_batch), ("opt batch", self.opt_batch), ("max batch", self.max_batch),
                            ("min seq", self.min_seq), ("opt seq", self.opt_seq), ("max seq", self.max_seq),
                            ("workspace MiB", self.workspace_mib)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{what}: expected an integer >= 1, found {value!r}")
        batch = (self.min_batch, self.max_batch if self.opt_batch is None else self.opt_batch, self.max_batch)
        if not batch[0] <= batch[1] <= batch[2]:
            raise ValueError(f"batch profile: expected min <= opt <= max, found {batch}")
        seq = [v for v in (self.min_seq, self.opt_seq, self.max_seq) if v is not None]
        if seq != sorted(seq):
            found = (self.min_seq, self.opt_seq, self.max_seq)
            raise ValueError(f"sequence profile: expected min <= opt <= max, found {found}")

    @classmethod
    def from_build_options(cls, options: Any) -> TensorRTSettings:
        """From ``exporter.build.BuildOptions`` (its ``precision`` and ``trt_*`` fields)."""
        return cls(
            precision=getattr(options, "precision", "fp32"),
            min_batch=getattr(options, "trt_min_batch", 1),
            opt_batch=getattr(options, "trt_opt_batch", None),
            max_batch=getattr(options, "trt_max_batch", 32),
            min_seq=getattr(options, "trt_min_seq", 1),
            opt_seq=getattr(options, "trt_opt_seq", None),
            max_seq=getattr(options, "trt_max_seq", None),
            workspace_mib=getattr(options, "trt_workspace_mib", 2048),
            timing_cache=getattr(options, "trt_timing_cache", None),
        )

    def profile(self, build_max_seq: int) -> Profile:
        """The optimisation profile for a build whose graphs accept up to ``build_max_seq`` tokens."""
        max_seq = build_max_seq if self.max_seq is None else self.max_seq
        if max_seq > build_max_seq:
            raise ValueError(f"max sequence: expected <= the build's max_seq_len {build_max_seq}, found {max_seq}")
        batch = (self.min_batch, self.max_batch if self.opt_batch is None else self.opt_batch, self.max_batch)
        seq = (self.min_seq, max_seq if self.opt_seq is None else self.opt_seq, max_seq)
        return Profile(batch, seq)


def profile_shapes(tensor: TensorSpec, profile: Profile) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one graph input: named axes from the profile, fixed sizes as they are."""
    axes = {BATCH: profile.batch, SEQ: profile.seq}
    shapes: list[list[int]] = [[], [], []]
    for dim in tensor.shape:
        if isinstance(dim, str):
            if dim not in axes:
                raise BuildError(f"input {tensor.name!r}: expected dynamic axes {sorted(axes)}, found {dim!r}")
            values = axes[dim]
        else:
            values = (int(dim),) * 3
        for shape, value in zip(shapes, values):
            shape.append(value)
    low, opt, high = (tuple(s) for s in shapes)
    return low, opt, high


def engine_file(graph: str, precision: str) -> str:
    return f"{graph}.{precision}{ENGINE_SUFFIX}"


# --------------------------------------------------------------------------- fp16 ONNX variant


def _toposort(graph: Any) -> None:
    """Reorder ``graph.node`` topologically (the fp16 converter appends its input casts at the end)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        blocked = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                blocked.append(node)
        if len(blocked) == len(pending):
            missing = sorted({n for node in blocked for n in node.input if n not in available})[:5]
            raise BuildError(f"fp16 variant: nodes read tensors that nothing produces: {missing}")
        pending = blocked
    del graph.node[:]
    graph.node.extend(ordered)


def fp16_variant(src: Path, dst: Path) -> None:
    """Write an fp16 copy of the ONNX graph ``src`` to ``dst`` with fp32 inputs and outputs.

    Float initializers and activations become fp16 (values beyond fp16's range are clipped,
    e.g. the additive attention mask's float32 minimum becomes -65504); LayerNormalization
    runs in fp32 behind casts; graph inputs/outputs keep their dtypes.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    io_before = [(v.name, v.type.tensor_type.elem_type) for v in (*model.graph.input, *model.graph.output)]
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_KEEP_FP32_OPS)
    )
    _toposort(converted.graph)
    io_after = [(v.name, v.type.tensor_type.elem_type) for v in (*converted.graph.input, *converted.graph.output)]
    if io_after != io_before:
        raise BuildError(f"fp16 variant of {src.name}: expected graph I/O {io_before}, found {io_after}")
    try:
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise BuildError(f"fp16 variant of {src.name} is not a valid ONNX model: {exc}") from None
    onnx.save(converted, str(dst))


# --------------------------------------------------------------------------- engine build


def _strongly_typed_flags(trt: ModuleType) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)  # TensorRT 11: always strongly typed, the flag is ignored


def _parse(trt: ModuleType, builder: Any, logger: Any, onnx_path: Path, spec: GraphSpec) -> Any:
    network = builder.create_network(_strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise BuildError(f"TensorRT cannot parse {spec.onnx.file}: " + "; ".join(errors or ["no error reported"]))
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if inputs != spec.input_names or outputs != spec.output_names:
        raise BuildError(
            f"{spec.onnx.file}: expected inputs {spec.input_names} and outputs {spec.output_names}, "
            f"TensorRT parsed inputs {inputs} and outputs {outputs}"
        )
    return network, parser  # the parser must outlive the network's use


def _config(trt: ModuleType, builder: Any, spec: GraphSpec, settings: TensorRTSettings, profile: Profile,
            cache: Any) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.max_aux_streams = 0
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if settings.precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)
    opt_profile = builder.create_optimization_profile()
    for tensor in spec.inputs:
        low, opt, high = profile_shapes(tensor, profile)
        opt_profile.set_shape(tensor.name, low, opt, high)
    if config.add_optimization_profile(opt_profile) < 0:
        raise BuildError(f"{spec.name}: TensorRT rejected the optimisation profile {profile.to_dict()}")
    if not config.set_timing_cache(cache, False):
        raise BuildError(f"{spec.name}: TensorRT rejected the timing cache")
    return config


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_tensorrt_engines(build_dir: Path, graphs: dict[str, GraphSpec], settings: TensorRTSettings,
                           build_max_seq: int, log: Any = None) -> dict[str, FileRef | None]:
    """Build, serialize and write one engine per graph; return their FileRefs (relative to ``build_dir``)."""
    trt = require_tensorrt()
    profile = settings.profile(build_max_seq)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_path = Path(settings.timing_cache) if settings.timing_cache else build_dir / TIMING_CACHE_FILE
    seed = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = builder.create_builder_config().create_timing_cache(seed)
    if cache is None:
        raise BuildError(f"TensorRT could not read the timing cache {cache_path} (delete it to start a fresh one)")
    engines: dict[str, FileRef | None] = {}
    with tempfile.TemporaryDirectory(prefix="pabee-trt-") as scratch:
        for name, spec in graphs.items():
            source = build_dir / spec.onnx.file
            if settings.precision == "fp16":
                variant = Path(scratch) / f"{name}.fp16.onnx"
                fp16_variant(source, variant)
                source = variant
            network, _parser = _parse(trt, builder, logger, source, spec)
            config = _config(trt, builder, spec, settings, profile, cache)
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise BuildError(f"TensorRT failed to build an engine for {spec.onnx.file} (see its log above)")
            file = engine_file(name, settings.precision)
            (build_dir / file).write_bytes(bytes(plan))
            engines[name] = FileRef(file, sha256_file(build_dir / file))
            if log is not None:
                log(f"tensorrt: {file} ({settings.precision}, profile {profile.to_dict()})")
    _write_atomic(cache_path, bytes(cache.serialize()))
    return engines


def settings_record(settings: TensorRTSettings, build_max_seq: int) -> dict[str, Any]:
    """What a manifest's ``build_options`` should record about a tensorrt build."""
    record = dataclasses.asdict(settings)
    record["profile"] = settings.profile(build_max_seq).to_dict()
    record["io_dtype"] = "float32 (fp16 variants cast inside the graph)"
    return record
