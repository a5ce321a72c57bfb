"""Engine backends: turn exported ONNX subgraphs into loadable engines.

* ``onnxruntime`` (default): each graph is fused by ONNX Runtime's transformer
  optimizer (``exporter.optimize``) into ``<name>.ort.onnx``, the engine the
  runtime loads; the portable ``<name>.onnx`` stays in the build.
* ``tensorrt``: needs the ``tensorrt`` Python package (TensorRT 10+), imported
  only when this backend is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from runtime.integrity import sha256_file
from runtime.manifest import BuildError, FileRef, GraphSpec

__all__ = ["BACKENDS", "BackendUnavailableError", "EngineBuild", "EngineContext", "build_engines"]


class BackendUnavailableError(BuildError):
    """The chosen backend's package is not installed."""


@dataclass(frozen=True)
class EngineContext:
    """What engine builders need to know about the model and the build."""

    num_heads: int
    hidden_size: int
    max_seq_len: int
    fuse: bool = True  # onnxruntime: run the transformer fusions
    tensorrt: Any = None  # exporter.tensorrt_backend.TensorRTSettings (tensorrt backend only)


@dataclass
class EngineBuild:
    engines: dict[str, FileRef | None]  # None: the backend loads the ONNX file itself
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest's build_options


def _onnxruntime_engines(build_dir: Path, graphs: dict[str, GraphSpec], context: EngineContext) -> EngineBuild:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("the onnxruntime backend needs `pip install onnxruntime`") from None
    if not context.fuse:
        return EngineBuild({name: None for name in graphs}, {"fused_ops": {}})
    from exporter.optimize import fuse_for_onnxruntime

    engines: dict[str, FileRef | None] = {}
    fused: dict[str, dict[str, int]] = {}
    for name, spec in graphs.items():
        dst = build_dir / f"{name}.ort.onnx"
        try:
            result = fuse_for_onnxruntime(build_dir / spec.onnx.file, dst, context.num_heads, context.hidden_size)
        except Exception as exc:
            raise BuildError(f"onnxruntime fusion of {spec.onnx.file} failed: {exc}") from None
        engines[name] = FileRef(dst.name, sha256_file(dst))
        fused[name] = result.fused_ops
    return EngineBuild(engines, {"fused_ops": fused})


def _tensorrt_engines(build_dir: Path, graphs: dict[str, GraphSpec], context: EngineContext) -> EngineBuild:
    """One TensorRT engine per graph (``exporter.tensorrt_backend``).

    Settings (precision, optimisation profile, timing cache) come from ``context.tensorrt``
    when the build passes them, else the defaults (fp32, batch 1..32, sequence 1..max_seq_len).
    """
    from exporter.tensorrt_backend import TensorRTSettings, build_tensorrt_engines, require_tensorrt, settings_record

    require_tensorrt()  # first: a clear message when the package is missing
    settings = getattr(context, "tensorrt", None) or TensorRTSettings()
    engines = build_tensorrt_engines(build_dir, graphs, settings, context.max_seq_len)
    return EngineBuild(
        engines, {"precision": settings.precision, "tensorrt": settings_record(settings, context.max_seq_len)}
    )


BACKENDS: dict[str, Callable[[Path, dict[str, GraphSpec], EngineContext], EngineBuild]] = {
    "onnxruntime": _onnxruntime_engines,
    "tensorrt": _tensorrt_engines,
}


def build_engines(backend: str, build_dir: Path, graphs: dict[str, GraphSpec], context: EngineContext) -> EngineBuild:
    """Build one engine per graph."""
    if backend not in BACKENDS:
        raise BuildError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend](build_dir, graphs, context)
