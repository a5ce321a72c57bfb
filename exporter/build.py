"""``model.pt`` -> build folder: subgraphs, parity check, engines, manifest.

The build is atomic: everything is written to a temporary folder next to the
target and renamed into place only when every step passed. An existing build is
never touched unless ``force`` is set, and even then only after the new build
is complete.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from exporter.backends import EngineContext, build_engines
from exporter.checkpoint import Checkpoint, load_model_source
from exporter.onnx_export import DEFAULT_OPSET, export_subgraphs, plan_subgraphs
from exporter.parity import check_parity, default_cases
from exporter.tensorrt_backend import TensorRTSettings
from runtime.chain import OrtChainExecutor
from runtime.engines import OrtOptions
from runtime.integrity import sha256_file
from runtime.manifest import MANIFEST_FILE, SCHEMA_VERSION, BuildError, FileRef, GraphSpec, Manifest
from runtime.tokenization import TextEncoder

__all__ = ["BuildOptions", "ParityError", "build"]

TOKENIZER_FILE = "tokenizer.json"
DEFAULT_MAX_SEQ_LEN = 128


class ParityError(BuildError):
    """The compiled graphs disagree with PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class BuildOptions:
    backend: str = "onnxruntime"
    opset: int = DEFAULT_OPSET
    max_seq_len: int | None = None  # None: min(128, the model's position limit)
    parity_tolerance: float = 1e-4
    force: bool = False
    fuse: bool = True  # onnxruntime: fuse attention/layer-norm/GELU into contrib ops
    # tensorrt backend only (see exporter.tensorrt_backend.TensorRTSettings); None opt values mean "= max",
    # the sequence maximum is max_seq_len
    precision: str = "fp32"  # "fp16": engines built from an fp16 ONNX variant with fp32 I/O
    trt_min_batch: int = 1
    trt_opt_batch: int | None = None
    trt_max_batch: int = 32
    trt_min_seq: int = 1
    trt_opt_seq: int | None = None
    trt_workspace_mib: int = 2048
    trt_timing_cache: str | None = None  # timing cache file to reuse and update (default: one in the build)


def _tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _check_target(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; refusing to replace it")


def _publish(tmp_dir: Path, out_dir: Path) -> None:
    """Move the finished build into place; the old one (with --force) is removed only afterwards."""
    backup = None
    if out_dir.exists():
        backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, backup)
    try:
        os.replace(tmp_dir, out_dir)
    except BaseException:
        if backup is not None:
            os.replace(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def build(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: BuildOptions = BuildOptions(),
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> Manifest:
    """Export, check parity, build engines and write the manifest; return it."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    _check_target(out_dir, options.force)
    ckpt = load_model_source(model_path)
    model = ckpt.model.eval()
    model.set_attention("eager")
    if options.max_seq_len is None:
        options = dataclasses.replace(options, max_seq_len=min(DEFAULT_MAX_SEQ_LEN, ckpt.tokenizer.max_length))
    if not 4 <= options.max_seq_len <= ckpt.tokenizer.max_length:
        raise ValueError(
            f"max_seq_len must be in 4..{ckpt.tokenizer.max_length} (the model's position limit); got {options.max_seq_len}"
        )
    specs, embeddings, steps = plan_subgraphs(model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        encoder = TextEncoder(ckpt.tokenizer.json, options.max_seq_len, ckpt.tokenizer.pad_id)
        cases = default_cases(model, encoder)
        bar = tqdm(total=len(specs) + len(cases) + 1, desc="build", unit="step", disable=not progress)
        exported = export_subgraphs(model, specs, tmp_dir, options.opset, progress=lambda _: bar.update(1))
        graphs = {
            e.spec.name: GraphSpec(e.spec.name, FileRef(e.spec.file, sha256_file(e.path)), e.spec.inputs, e.spec.outputs)
            for e in exported
        }
        (tmp_dir / TOKENIZER_FILE).write_bytes(ckpt.tokenizer.json.encode("utf-8"))
        manifest = _manifest(ckpt, model_path, options, embeddings, graphs, steps, tmp_dir)

        built = build_engines(
            options.backend,
            tmp_dir,
            graphs,
            EngineContext(
                model.num_heads,
                model.hidden_size,
                options.max_seq_len,
                fuse=options.fuse,
                tensorrt=TensorRTSettings.from_build_options(options) if options.backend == "tensorrt" else None,
            ),
        )
        graphs = {name: dataclasses.replace(g, engine=built.engines.get(name)) for name, g in graphs.items()}
        manifest = dataclasses.replace(
            manifest, graphs=graphs, build_options={**manifest.build_options, **built.info, "fused": options.fuse}
        )
        bar.update(1)
        # Parity runs on what the runtime will load: the ONNX Runtime engines (for other
        # backends, on the portable ONNX graphs through ONNX Runtime).
        parity = check_parity(
            model,
            OrtChainExecutor.load(tmp_dir, manifest, OrtOptions()),
            cases,
            options.parity_tolerance,
            progress=lambda _: bar.update(1),
        )
        bar.close()
        log("parity vs PyTorch (max-abs error per exit output):\n" + parity.table())
        if not parity.passed:
            raise ParityError(
                f"parity check failed ({len(parity.failures())} exit outputs beyond {options.parity_tolerance:g}):\n  "
                + "\n  ".join(parity.failures())
            )
        manifest = dataclasses.replace(manifest, parity=parity.to_dict())
        manifest.validate()
        (tmp_dir / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        _publish(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    log(f"wrote {out_dir} ({len(graphs)} graphs, {manifest.num_layers} layers, backend {options.backend})")
    return manifest


def _manifest(
    ckpt: Checkpoint,
    model_path: str | os.PathLike,
    options: BuildOptions,
    embeddings: str,
    graphs: dict[str, GraphSpec],
    steps: list,
    tmp_dir: Path,
) -> Manifest:
    model = ckpt.model
    source = Path(model_path).resolve()
    return Manifest(
        schema_version=SCHEMA_VERSION,
        backbone={
            "model_type": model.model_type,
            "num_layers": model.num_layers,
            "hidden_size": model.hidden_size,
            "config": model.config.to_diff_dict(),
        },
        head=model.head.to_dict(),
        task=model.task.to_dict(),
        default_policy=dict(ckpt.default_policy),
        tokenizer={
            "file": TOKENIZER_FILE,
            "sha256": sha256_file(tmp_dir / TOKENIZER_FILE),
            "max_length": ckpt.tokenizer.max_length,
            "pad_id": ckpt.tokenizer.pad_id,
            "uses_token_types": model.spec.uses_token_types,
        },
        max_seq_len=options.max_seq_len,
        embeddings=embeddings,
        graphs=graphs,
        steps=tuple(steps),
        backend=options.backend,
        build_options={
            "opset": options.opset,
            "exporter": "torch.onnx (TorchScript-based, dynamo=False)",
            "attention": "eager",
            "precision": "fp32",
            "parity_tolerance": options.parity_tolerance,
            "dynamic_axes": ["batch", "sequence"],
        },
        tool_versions={"pabee_deploy": _own_version(), **_tool_versions()},
        source_model={"path": str(source), "sha256": sha256_file(source) if source.is_file() else None},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _own_version() -> str:
    try:
        from importlib.metadata import version

        return version("pabee-deploy")
    except Exception:
        return "0+unknown"
