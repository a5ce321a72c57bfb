"""Lazy imports of the GPU-only packages, each failing with the package it needs and how to get it."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from runtime.engines import EngineError

__all__ = ["GpuUnavailableError", "TensorRTUnavailableError", "import_tensorrt", "require_cuda", "import_torch"]

TENSORRT_HINT = (
    "install NVIDIA TensorRT 10+ for your CUDA version (the `tensorrt` Python package from NVIDIA's index), "
    "or use the torch executor"
)


class GpuUnavailableError(EngineError):
    """torch, a CUDA build of torch or a CUDA device is missing."""


class TensorRTUnavailableError(EngineError):
    """The ``tensorrt`` Python package (10+) is not installed."""


def import_torch() -> ModuleType:
    try:
        import torch
    except ImportError as exc:
        raise GpuUnavailableError(f"the GPU path needs torch, which is not installed ({exc})") from exc
    return torch


def require_cuda(device: Any = None) -> tuple[ModuleType, Any]:
    """``(torch, torch.device)`` for a usable CUDA device; a clear error naming what is missing otherwise."""
    torch = import_torch()
    if torch.version.cuda is None:
        raise GpuUnavailableError(
            f"expected a CUDA build of torch, found torch {torch.__version__} without CUDA support "
            "(install a CUDA wheel from https://pytorch.org)"
        )
    if not torch.cuda.is_available():
        raise GpuUnavailableError(
            f"expected a CUDA GPU, found none (torch {torch.__version__} built for CUDA {torch.version.cuda}; "
            "torch.cuda.is_available() is False)"
        )
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"expected a CUDA device, found {dev}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return torch, dev


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailableError(
            f"tensorrt not installed (`import tensorrt` failed: {exc}); {TENSORRT_HINT}"
        ) from exc
    major = int(str(getattr(tensorrt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise TensorRTUnavailableError(
            f"expected TensorRT >= 10 (name-based I/O, execute_async_v3), found {tensorrt.__version__}; {TENSORRT_HINT}"
        )
    return tensorrt
