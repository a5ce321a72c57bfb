"""Engine backends: turn exported ONNX subgraphs into loadable engines.

* ``onnxruntime`` (default): the ONNX file is the engine; building checks that
  every graph loads in an ONNX Runtime session.
* ``tensorrt``: needs the ``tensorrt`` Python package (TensorRT 10+), which is
  imported only when this backend is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runtime.manifest import BuildError, FileRef, GraphSpec

__all__ = ["BACKENDS", "BackendUnavailableError", "build_engines"]


class BackendUnavailableError(BuildError):
    """The chosen backend's package is not installed."""


def _onnxruntime_engines(build_dir: Path, graphs: dict[str, GraphSpec]) -> dict[str, FileRef | None]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError("the onnxruntime backend needs `pip install onnxruntime`") from None
    for spec in graphs.values():
        try:
            ort.InferenceSession(str(build_dir / spec.onnx.file), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BuildError(f"onnxruntime cannot load {spec.onnx.file}: {exc}") from None
    return {name: None for name in graphs}


def _tensorrt_engines(build_dir: Path, graphs: dict[str, GraphSpec]) -> dict[str, FileRef | None]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            "the tensorrt backend needs NVIDIA TensorRT's Python package (`import tensorrt` failed). Install TensorRT "
            "10+ for your CUDA version from NVIDIA, or build with --backend onnxruntime"
        ) from None
    raise BackendUnavailableError(
        "TensorRT engine building is not part of this release yet; build with --backend onnxruntime"
    )


BACKENDS: dict[str, Callable[[Path, dict[str, GraphSpec]], dict[str, FileRef | None]]] = {
    "onnxruntime": _onnxruntime_engines,
    "tensorrt": _tensorrt_engines,
}


def build_engines(backend: str, build_dir: Path, graphs: dict[str, GraphSpec]) -> dict[str, FileRef | None]:
    """Build one engine per graph; ``None`` means the backend loads the ONNX file itself."""
    if backend not in BACKENDS:
        raise BuildError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend](build_dir, graphs)
