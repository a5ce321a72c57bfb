"""Compile ``exit_step.cu`` with NVRTC through cuda-python's ``cuda.core`` and launch it on torch tensors.

Nothing here is imported at package import time: torch and ``cuda.core`` are imported when a
function needs them, and a missing cuda-python raises :class:`CudaPythonUnavailable` with the
install command. Cubins are cached on disk per (source, options, NVRTC version, arch) under
``$PABEE_KERNEL_CACHE`` or ``~/.cache/pabee-deploy/kernels``.

Typical use per layer of the early-exit chain (all on torch's current stream)::

    kern = ExitKernels()                       # compiles or loads the cached cubin
    state = DeviceState.fresh(B, C, "cuda")
    kern.policy_step(policy, logits, active_idx, state, layer=i, num_layers=L)
    kern.compact(state.done, active_idx, active_out, keep_rows, n_remaining)
    m = int(n_remaining.item())                # or pass n_remaining as n_rows_dev below
    kern.gather(hidden, keep_rows, hidden_out[:m])
    kern.gather(mask, keep_rows, mask_out[:m])
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from kernels.elf import CubinFormatError, function_symbols
from kernels.params import KernelParams, check_num_classes, kernel_params, policy_for
from kernels.spec import (
    COMPACT_BLOCK,
    COMPACT_KERNEL,
    GATHER_BLOCK,
    GATHER_KERNEL,
    GATHER_MAX_GRID_X,
    KERNEL_NAMES,
    KERNEL_SIGNATURES,
    MAX_GRID_Y,
    ROWS_PER_STEP_BLOCK,
    SOURCE_PATH,
    STATE_DTYPES,
    STEP_BLOCK,
    step_kernel_name,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kernels.reference import StateBuffers
    from runtime.policies import ExitPolicy

CACHE_ENV = "PABEE_KERNEL_CACHE"
INSTALL_HINT = (
    'pip install cuda-python  (or "cuda-python[all]" to get the NVRTC library too when no CUDA toolkit is installed)'
)
NVRTC_STD = "c++17"


class CudaPythonUnavailable(ImportError):
    """cuda-python (``cuda.core``) or NVRTC is not installed."""


class KernelBuildError(RuntimeError):
    """NVRTC could not compile exit_step.cu, or the result lacks an entry point."""


# --------------------------------------------------------------------------- imports


def import_cuda_core() -> ModuleType:
    """``cuda.core`` (1.x; 0.x kept the same API under ``cuda.core.experimental``)."""
    try:
        import cuda.core as core
    except ImportError as exc:
        raise CudaPythonUnavailable(
            f"the CUDA exit kernels need cuda-python's cuda.core, which is not installed: {INSTALL_HINT} "
            f"(import error: {exc})"
        ) from exc
    if not hasattr(core, "Program"):
        try:
            import cuda.core.experimental as core  # cuda-core 0.x
        except ImportError as exc:
            raise CudaPythonUnavailable(
                f"expected cuda.core with Program/launch (cuda-core >= 0.3), found {getattr(core, '__file__', core)}: "
                f"{INSTALL_HINT}"
            ) from exc
    return core


def _import_torch() -> ModuleType:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"kernels.loader launches on torch CUDA tensors; torch is not installed ({exc})") from exc
    return torch


def nvrtc_version() -> str:
    """``"major.minor"`` of the NVRTC library cuda.bindings loads."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise CudaPythonUnavailable(f"cuda.bindings is not installed: {INSTALL_HINT} ({exc})") from exc
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # the library itself missing: DynamicLibNotFoundError, RuntimeError, ...
        raise CudaPythonUnavailable(f"the NVRTC library could not be loaded: {INSTALL_HINT} ({exc})") from exc
    if int(err) != 0:
        raise CudaPythonUnavailable(f"nvrtcVersion failed with {err!r}: {INSTALL_HINT}")
    return f"{major}.{minor}"


# --------------------------------------------------------------------------- compile + cache


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "pabee-deploy" / "kernels"


def _check_cubin(data: bytes, origin: str) -> bytes:
    try:
        symbols = function_symbols(data)
    except CubinFormatError as exc:
        raise KernelBuildError(f"{origin}: expected a cubin, found something else ({exc})") from None
    missing = [name for name in KERNEL_NAMES if name not in symbols]
    if missing:
        raise KernelBuildError(f"{origin}: expected entry points {missing}, found only {sorted(symbols)}")
    return data


def compile_cubin(arch: str, *, source: Path = SOURCE_PATH, cache_dir: Path | None = None) -> bytes:
    """The cubin of ``source`` for ``arch`` ("sm_90"), from the disk cache or NVRTC."""
    text = source.read_text(encoding="utf-8")
    version = nvrtc_version()
    options_key = f"std={NVRTC_STD};arch={arch}"
    digest = hashlib.sha256("\0".join((text, options_key, f"nvrtc={version}")).encode()).hexdigest()
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    path = directory / f"{digest}-{arch}.cubin"
    if path.is_file():
        try:
            return _check_cubin(path.read_bytes(), str(path))
        except KernelBuildError:
            pass  # a corrupt cache entry: rebuild and overwrite it

    core = import_cuda_core()
    try:
        options = core.ProgramOptions(std=NVRTC_STD, arch=arch, name=source.name)
        program = core.Program(text, code_type="c++", options=options)
        data = bytes(program.compile("cubin").code)
    except Exception as exc:
        raise KernelBuildError(f"NVRTC {version} failed to compile {source} for {arch}: {exc}") from exc
    _check_cubin(data, f"NVRTC output for {arch}")
    try:  # atomic publish; a read-only cache only costs a recompile next time
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass
    return data


# --------------------------------------------------------------------------- device buffers


@dataclass
class DeviceState:
    """Per-original-sample state on the GPU (length B); see the header of exit_step.cu."""

    prev_label: torch.Tensor  # int32 [B], -1 = none
    prev_value: torch.Tensor  # float32 [B], NaN = none
    counter: torch.Tensor  # int32 [B]
    done: torch.Tensor  # uint8 [B]
    exit_layer: torch.Tensor  # int32 [B], 0 = running
    exit_outputs: torch.Tensor  # float32 [B, C]

    @classmethod
    def fresh(cls, batch_size: int, num_classes: int, device: Any) -> DeviceState:
        torch = _import_torch()
        return cls(
            prev_label=torch.full((batch_size,), -1, dtype=torch.int32, device=device),
            prev_value=torch.full((batch_size,), float("nan"), dtype=torch.float32, device=device),
            counter=torch.zeros(batch_size, dtype=torch.int32, device=device),
            done=torch.zeros(batch_size, dtype=torch.uint8, device=device),
            exit_layer=torch.zeros(batch_size, dtype=torch.int32, device=device),
            exit_outputs=torch.zeros((batch_size, num_classes), dtype=torch.float32, device=device),
        )

    @classmethod
    def from_numpy(cls, state: StateBuffers, device: Any) -> DeviceState:
        torch = _import_torch()
        return cls(**{f.name: torch.from_numpy(getattr(state, f.name).copy()).to(device) for f in fields(cls)})

    def to_numpy(self) -> StateBuffers:
        from kernels.reference import StateBuffers

        return StateBuffers(**{f.name: getattr(self, f.name).cpu().numpy() for f in fields(self)})

    def validate(self, device: torch.device) -> tuple[int, int]:
        """Check dtypes, shapes, contiguity and device; return (B, C)."""
        batch = self.done.shape[0] if self.done.dim() == 1 else -1
        for name, dtype in STATE_DTYPES.items():
            tensor = getattr(self, name)
            want_ndim = 2 if name == "exit_outputs" else 1
            _check_tensor(f"state.{name}", tensor, device, (dtype,))
            if tensor.dim() != want_ndim or tensor.shape[0] != batch:
                raise ValueError(
                    f"state.{name}: expected {want_ndim}-D with {batch} rows, found shape {tuple(tensor.shape)}"
                )
        return batch, int(self.exit_outputs.shape[1])


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _check_tensor(what: str, tensor: Any, device: torch.device, dtypes: tuple[str, ...] | None) -> None:
    torch = _import_torch()
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, found {type(tensor).__name__}")
    if tensor.device != device:
        raise ValueError(f"{what}: expected a tensor on {device}, found one on {tensor.device}")
    if dtypes is not None and _dtype_name(tensor) not in dtypes:
        raise ValueError(f"{what}: expected dtype {' or '.join(dtypes)}, found {_dtype_name(tensor)}")
    if not tensor.is_contiguous():
        raise ValueError(f"{what}: expected a contiguous tensor, found strides {tensor.stride()}")


class _ForeignStream:
    """Adapter for torch streams that predate the ``__cuda_stream__`` protocol."""

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self._handle)


_INT_RANGES = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1), "ptr": (0, 2**64 - 1)}
_NUMPY_TYPES = {"i32": np.int32, "i64": np.int64, "f32": np.float32, "f64": np.float64}


def pack_args(name: str, values: dict[str, Any]) -> tuple[Any, ...]:
    """Launch arguments for kernel ``name`` in its declared order and C types.

    Pointers become Python ints (cuda.core passes those as pointers), scalars NumPy
    scalars of the exact width. Raises if a name is missing, unknown or out of range.
    """
    signature = KERNEL_SIGNATURES[name]
    expected = [arg for arg, _ in signature]
    if sorted(values) != sorted(expected):
        raise TypeError(f"{name}: expected arguments {expected}, found {sorted(values)}")
    packed: list[Any] = []
    for arg, ctype in signature:
        value = values[arg]
        if ctype in _INT_RANGES:
            value = 0 if value is None else int(value)
            low, high = _INT_RANGES[ctype]
            if not low <= value <= high:
                raise ValueError(f"{name}.{arg}: expected a {ctype} in [{low}, {high}], found {value}")
        packed.append(value if ctype == "ptr" else _NUMPY_TYPES[ctype](value))
    return tuple(packed)


@dataclass(frozen=True)
class DeviceChainResult:
    exit_layer: np.ndarray  # int64 [B]
    outputs: np.ndarray  # float32 [B, C]
    remaining_per_layer: list[int]
    state: DeviceState


# --------------------------------------------------------------------------- kernels


class ExitKernels:
    """The exit-step, compaction and gather kernels, loaded for one CUDA device.

    Every launch goes to torch's current stream of that device and returns without
    synchronising. Tensors must be contiguous and on that device.
    """

    def __init__(self, device: Any = None, *, cache_dir: str | os.PathLike[str] | None = None) -> None:
        torch = _import_torch()
        core = import_cuda_core()
        if not torch.cuda.is_available():
            raise RuntimeError("expected a CUDA GPU, found none (torch.cuda.is_available() is False)")
        tdev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        if tdev.type != "cuda":
            raise ValueError(f"expected a CUDA device, found {tdev}")
        if tdev.index is None:
            tdev = torch.device("cuda", torch.cuda.current_device())
        self.torch_device = tdev
        self._torch = torch
        self._core = core
        self._device = core.Device(tdev.index)
        self._device.set_current()
        major, minor = torch.cuda.get_device_capability(tdev)
        self.arch = f"sm_{major}{minor}"
        cubin = compile_cubin(self.arch, cache_dir=Path(cache_dir) if cache_dir is not None else None)
        try:
            module = core.ObjectCode.from_cubin(cubin)
            self._kernels = {name: module.get_kernel(name) for name in KERNEL_NAMES}
        except Exception as exc:
            raise KernelBuildError(f"could not load the {self.arch} cubin on {tdev}: {exc}") from exc
        self._module = module
        self._threads = threading.local()

    # ---------------------------------------------------------------- launch plumbing

    def _stream(self) -> Any:
        stream = self._torch.cuda.current_stream(self.torch_device)
        return stream if hasattr(stream, "__cuda_stream__") else _ForeignStream(int(stream.cuda_stream))

    def _launch(self, name: str, grid: tuple[int, ...], block: int, **values: Any) -> None:
        args = pack_args(name, values)
        if not getattr(self._threads, "current", False):
            self._device.set_current()  # once per host thread: the kernel loads into this context
            self._threads.current = True
        config = self._core.LaunchConfig(grid=grid, block=block)
        self._core.launch(self._stream(), config, self._kernels[name], *args)

    def argument_sizes(self, name: str) -> list[int]:
        """Parameter sizes the driver reports for a loaded kernel (cuda.core >= 0.3)."""
        infos = self._kernels[name].arguments_info
        return [int(info.size) if hasattr(info, "size") else int(info[1]) for info in infos]

    def _ptr(self, tensor: torch.Tensor | None) -> int:
        return 0 if tensor is None else int(tensor.data_ptr())

    def _count_ptr(self, what: str, count_dev: torch.Tensor | None) -> int:
        if count_dev is None:
            return 0
        _check_tensor(what, count_dev, self.torch_device, ("int32",))
        if count_dev.numel() < 1:
            raise ValueError(f"{what}: expected at least one int32 element, found none")
        return int(count_dev.data_ptr())

    # ---------------------------------------------------------------- step kernels

    def step(
        self,
        params: KernelParams,
        logits: torch.Tensor,
        active_idx: torch.Tensor,
        state: DeviceState,
        *,
        layer: int,
        num_layers: int,
        n_active_dev: torch.Tensor | None = None,
    ) -> None:
        """Launch ``exit_<kind>_step_<f32|f16>`` for the packed rows of ``logits`` [n_active, C].

        With ``n_active_dev`` (int32 [1] on the device) only its first
        ``min(n_active_dev[0], n_active)`` rows are processed, without a host sync.
        """
        policy_for(params)  # validates the scalars exactly as runtime.policies does
        dev = self.torch_device
        _check_tensor("logits", logits, dev, ("float32", "float16"))
        _check_tensor("active_idx", active_idx, dev, ("int32",))
        batch, num_classes = state.validate(dev)
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            raise ValueError(f"logits: expected [n_active, {num_classes}], found {tuple(logits.shape)}")
        n_active = int(logits.shape[0])
        if active_idx.dim() != 1 or active_idx.shape[0] != n_active:
            raise ValueError(f"active_idx: expected [{n_active}], found {tuple(active_idx.shape)}")
        if n_active > batch:
            raise ValueError(f"expected n_active <= batch size {batch}, found {n_active}")
        check_num_classes(params.kind, num_classes)
        if not 1 <= layer <= num_layers:
            raise ValueError(f"expected layer in 1..{num_layers}, found {layer}")
        count_ptr = self._count_ptr("n_active_dev", n_active_dev)
        if n_active == 0:
            return
        name = step_kernel_name(params.kind, _dtype_name(logits))
        grid = ((n_active + ROWS_PER_STEP_BLOCK - 1) // ROWS_PER_STEP_BLOCK,)
        self._launch(
            name,
            grid,
            STEP_BLOCK,
            logits=self._ptr(logits),
            active_idx=self._ptr(active_idx),
            n_active_dev=count_ptr,
            n_active=n_active,
            num_classes=num_classes,
            layer=layer,
            num_layers=num_layers,
            patience=params.patience,
            tau=params.tau,
            threshold=params.threshold,
            prev_label=self._ptr(state.prev_label),
            prev_value=self._ptr(state.prev_value),
            counter=self._ptr(state.counter),
            done=self._ptr(state.done),
            exit_layer=self._ptr(state.exit_layer),
            exit_outputs=self._ptr(state.exit_outputs),
        )

    def policy_step(self, policy: ExitPolicy, logits: torch.Tensor, active_idx: torch.Tensor,
                    state: DeviceState, *, layer: int, num_layers: int,
                    n_active_dev: torch.Tensor | None = None) -> None:
        """:meth:`step` with the kernel arguments of a runtime.policies object."""
        self.step(kernel_params(policy), logits, active_idx, state, layer=layer, num_layers=num_layers,
                  n_active_dev=n_active_dev)

    def full_step(self, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *, layer: int,
                  num_layers: int, n_active_dev: torch.Tensor | None = None) -> None:
        self.step(KernelParams("full"), logits, active_idx, state, layer=layer, num_layers=num_layers,
                  n_active_dev=n_active_dev)

    def patience_step(self, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *, layer: int,
                      num_layers: int, patience: int, n_active_dev: torch.Tensor | None = None) -> None:
        self.step(KernelParams("patience", patience=patience), logits, active_idx, state, layer=layer,
                  num_layers=num_layers, n_active_dev=n_active_dev)

    def regression_step(self, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *,
                        layer: int, num_layers: int, patience: int, tau: float,
                        n_active_dev: torch.Tensor | None = None) -> None:
        self.step(KernelParams("regression-patience", patience=patience, tau=tau), logits, active_idx, state,
                  layer=layer, num_layers=num_layers, n_active_dev=n_active_dev)

    def entropy_step(self, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *, layer: int,
                     num_layers: int, threshold: float, n_active_dev: torch.Tensor | None = None) -> None:
        self.step(KernelParams("entropy", threshold=threshold), logits, active_idx, state, layer=layer,
                  num_layers=num_layers, n_active_dev=n_active_dev)

    def max_prob_step(self, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *,
                      layer: int, num_layers: int, threshold: float,
                      n_active_dev: torch.Tensor | None = None) -> None:
        self.step(KernelParams("max-prob", threshold=threshold), logits, active_idx, state, layer=layer,
                  num_layers=num_layers, n_active_dev=n_active_dev)

    # ---------------------------------------------------------------- compaction and gather

    def compact(
        self,
        done: torch.Tensor,
        active_idx: torch.Tensor,
        active_idx_out: torch.Tensor,
        keep_rows: torch.Tensor,
        n_remaining: torch.Tensor,
        *,
        n_active_dev: torch.Tensor | None = None,
    ) -> None:
        """Launch ``exit_compact``: stable list of packed rows whose sample is not done.

        Writes ``n_remaining[0]``, ``active_idx_out[:n_remaining]`` and ``keep_rows[:n_remaining]``
        (both outputs need room for ``len(active_idx)`` entries and must not alias ``active_idx``).
        """
        dev = self.torch_device
        _check_tensor("done", done, dev, ("uint8",))
        for what, tensor in (("active_idx", active_idx), ("active_idx_out", active_idx_out),
                             ("keep_rows", keep_rows), ("n_remaining", n_remaining)):
            _check_tensor(what, tensor, dev, ("int32",))
        n_active = int(active_idx.numel())
        for what, tensor in (("active_idx_out", active_idx_out), ("keep_rows", keep_rows)):
            if tensor.numel() < n_active:
                raise ValueError(f"{what}: expected room for {n_active} entries, found {tensor.numel()}")
            if tensor.data_ptr() == active_idx.data_ptr() and n_active:
                raise ValueError(f"{what}: expected a buffer distinct from active_idx, found the same memory")
        if n_remaining.numel() < 1:
            raise ValueError("n_remaining: expected at least one int32 element, found none")
        self._launch(
            COMPACT_KERNEL,
            (1,),
            COMPACT_BLOCK,
            done=self._ptr(done),
            active_idx=self._ptr(active_idx),
            n_active_dev=self._count_ptr("n_active_dev", n_active_dev),
            n_active=n_active,
            active_idx_out=self._ptr(active_idx_out),
            keep_rows=self._ptr(keep_rows),
            n_remaining=self._ptr(n_remaining),
        )

    def gather(self, src: torch.Tensor, keep_rows: torch.Tensor, out: torch.Tensor, *,
               n_rows_dev: torch.Tensor | None = None) -> None:
        """Launch ``gather_rows``: ``out[r] = src[keep_rows[r]]`` for ``r < len(out)``.

        Any dtype (hidden states fp32/fp16/bf16 [n, S, H], int64 masks [n, S]). With
        ``n_rows_dev`` only ``min(n_rows_dev[0], len(out))`` rows are written.
        """
        dev = self.torch_device
        _check_tensor("src", src, dev, None)
        _check_tensor("out", out, dev, (_dtype_name(src),))
        _check_tensor("keep_rows", keep_rows, dev, ("int32",))
        if src.dim() < 1 or out.dim() != src.dim() or tuple(out.shape[1:]) != tuple(src.shape[1:]):
            raise ValueError(f"out: expected shape [n, {', '.join(map(str, src.shape[1:]))}], "
                             f"found {tuple(out.shape)}")
        n_rows = int(out.shape[0])
        if keep_rows.dim() != 1 or keep_rows.numel() < n_rows:
            raise ValueError(f"keep_rows: expected 1-D with >= {n_rows} entries, found {tuple(keep_rows.shape)}")
        count_ptr = self._count_ptr("n_rows_dev", n_rows_dev)
        row_bytes = (out[0].numel() if n_rows else 0) * out.element_size()
        if n_rows == 0 or row_bytes == 0:
            return
        src_end = src.data_ptr() + src.numel() * src.element_size()
        out_end = out.data_ptr() + out.numel() * out.element_size()
        if src.data_ptr() < out_end and out.data_ptr() < src_end:
            raise ValueError("out: expected memory that does not overlap src, found an overlap")
        chunks = -(-row_bytes // (16 * GATHER_BLOCK))
        grid = (max(1, min(chunks, GATHER_MAX_GRID_X)), min(n_rows, MAX_GRID_Y), 1)
        self._launch(
            GATHER_KERNEL,
            grid,
            GATHER_BLOCK,
            src=self._ptr(src),
            dst=self._ptr(out),
            keep_rows=self._ptr(keep_rows),
            n_rows_dev=count_ptr,
            n_rows=n_rows,
            row_bytes=row_bytes,
        )


def run_chain_device(kernels: ExitKernels, policy: ExitPolicy, layer_outputs: torch.Tensor, *,
                     seq_len: int = 3) -> DeviceChainResult:
    """Device counterpart of ``kernels.reference.run_chain_reference`` (trace mode).

    ``layer_outputs`` [L, B, C] fp32/fp16 on the kernels' device. Each layer's "model"
    reads its rows' sample ids from an int64 payload [n, seq_len] that moves only through
    :meth:`ExitKernels.gather`, so the result checks step, compaction and gather together.
    The host reads one int32 (n_remaining) per layer.
    """
    torch = kernels._torch
    dev = kernels.torch_device
    _check_tensor("layer_outputs", layer_outputs, dev, ("float32", "float16"))
    if layer_outputs.dim() != 3:
        raise ValueError(f"layer_outputs: expected [layers, batch, classes], found {tuple(layer_outputs.shape)}")
    num_layers, batch, num_classes = (int(s) for s in layer_outputs.shape)
    params = kernel_params(policy)
    state = DeviceState.fresh(batch, num_classes, dev)
    active = torch.arange(batch, dtype=torch.int32, device=dev)
    payload = torch.arange(batch, dtype=torch.int64, device=dev)[:, None].repeat(1, seq_len).contiguous()
    n_remaining = torch.zeros(1, dtype=torch.int32, device=dev)
    remaining: list[int] = []
    for layer in range(1, num_layers + 1):
        n = int(active.numel())
        if n == 0:
            break
        remaining.append(n)
        logits = layer_outputs[layer - 1].index_select(0, payload[:, 0]).contiguous()
        kernels.step(params, logits, active, state, layer=layer, num_layers=num_layers)
        active_out = torch.empty(n, dtype=torch.int32, device=dev)
        keep_rows = torch.empty(n, dtype=torch.int32, device=dev)
        kernels.compact(state.done, active, active_out, keep_rows, n_remaining)
        m = int(n_remaining.item())
        new_payload = torch.empty((m, seq_len), dtype=torch.int64, device=dev)
        kernels.gather(payload, keep_rows, new_payload)
        active, payload = active_out[:m], new_payload
    return DeviceChainResult(
        exit_layer=state.exit_layer.cpu().numpy().astype(np.int64),
        outputs=state.exit_outputs.cpu().numpy(),
        remaining_per_layer=remaining,
        state=state,
    )
