"""Executors of the GPU chain: the pieces of a multi-exit model on device tensors.

A ``DeviceExecutor`` is ``runtime.chain.StepExecutor`` moved to the device: it writes into
buffers the chain owns (so nothing is allocated or copied to the host per layer) and runs
on torch's current stream, which ``runtime.gpu.chain`` sets to the chain's stream.

* ``TorchDeviceExecutor``: the very modules of ``model.pt`` (``MultiExitModel.embed``,
  ``run_layer``, ``exit_output``), eager attention, on any torch device; ``TorchCudaExecutor``
  loads one on CUDA (the verification path of the TensorRT engines).
* ``runtime.gpu.tensorrt.TensorRTExecutor``: the build's engine files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from runtime.gpu.deps import import_torch, require_cuda

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from exporter.model import MultiExitModel

__all__ = ["DeviceExecutor", "TorchCudaExecutor", "TorchDeviceExecutor", "PRECISIONS"]

PRECISIONS = ("fp32", "fp16")


class DeviceExecutor(Protocol):
    """Runs the pieces of a multi-exit model on device tensors, on torch's current stream.

    Every tensor is contiguous and on ``device``; rows are samples and never interact, so
    padding rows (see ``padded_rows``) only cost time.
    """

    num_layers: int
    num_outputs: int  # exit output width (classes, or 1 for regression)
    hidden_size: int
    hidden_dtype: torch.dtype  # hidden states between layers
    logits_dtype: torch.dtype  # exit outputs: float32 or float16 (the exit kernels read both)
    device: torch.device

    def padded_rows(self, n: int, capacity: int) -> int:
        """Rows to run for ``n`` active rows (``n`` itself, or a bucket <= ``capacity`` for CUDA graphs)."""
        ...

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, out: torch.Tensor) -> None:
        """int64 [n, S] token ids and types -> ``out`` [n, S, hidden] (states entering layer 1)."""
        ...

    def layer(self, index: int, hidden: torch.Tensor, attention_mask: torch.Tensor, out_hidden: torch.Tensor,
              out_logits: torch.Tensor) -> None:
        """0-based layer ``index`` on [n, S, hidden] and int64 [n, S] -> ``out_hidden``, ``out_logits`` [n, C]."""
        ...


class TorchDeviceExecutor:
    """``DeviceExecutor`` over an eager ``MultiExitModel`` on ``device`` (no grad, eval mode).

    ``precision="fp16"`` casts the model to half: hidden states and exit outputs are fp16.
    The model is moved and cast in place.
    """

    def __init__(self, model: MultiExitModel, device: Any = "cpu", precision: str = "fp32") -> None:
        torch = import_torch()
        if precision not in PRECISIONS:
            raise ValueError(f"expected precision in {PRECISIONS}, found {precision!r}")
        self._torch = torch
        self.device = torch.device(device)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        model.set_attention("eager")
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.precision = precision
        self.num_layers = model.num_layers
        self.num_outputs = model.task.num_outputs
        self.hidden_size = model.hidden_size
        self.hidden_dtype = dtype
        self.logits_dtype = dtype
        self._uses_token_types = model.spec.uses_token_types

    @classmethod
    def load(cls, model_path: str | os.PathLike, device: Any = "cpu", precision: str = "fp32") -> TorchDeviceExecutor:
        from exporter.checkpoint import load_model_source

        return cls(load_model_source(model_path).model, device, precision)

    def padded_rows(self, n: int, capacity: int) -> int:
        return n

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, out: torch.Tensor) -> None:
        with self._torch.no_grad():
            types = token_type_ids if self._uses_token_types else None
            out.copy_(self.model.embed(input_ids, None, types))

    def layer(self, index: int, hidden: torch.Tensor, attention_mask: torch.Tensor, out_hidden: torch.Tensor,
              out_logits: torch.Tensor) -> None:
        with self._torch.no_grad():
            h = self.model.run_layer(index, hidden, attention_mask)
            out_hidden.copy_(h)
            out_logits.copy_(self.model.exit_output(index, h, attention_mask))


class TorchCudaExecutor(TorchDeviceExecutor):
    """``TorchDeviceExecutor`` on a CUDA device; refuses clearly without one."""

    def __init__(self, model: MultiExitModel, device: Any = None, precision: str = "fp32") -> None:
        _, dev = require_cuda(device)
        super().__init__(model, dev, precision)

    @classmethod
    def load(cls, model_path: str | os.PathLike, device: Any = None, precision: str = "fp32") -> TorchCudaExecutor:
        require_cuda(device)  # fail before reading the model
        from exporter.checkpoint import load_model_source

        return cls(load_model_source(model_path).model, device, precision)
