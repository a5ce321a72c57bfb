"""The three device launches of one exit step, behind one small interface.

``ExitOps`` is the subset of ``kernels.loader.ExitKernels`` the chain uses (same names,
arguments and semantics), so the CUDA kernels plug in directly. ``ReferenceExitOps``
implements it on CPU tensors with ``kernels.reference`` (the exact NumPy model of the
kernels, built on ``runtime.policies``): it lets the chain's orchestration (buffer
ping-pong, device-side counts, deferred host checks) run and be tested without a GPU.
It is the reference model, not a stand-in for the kernels' arithmetic, which only
``tests/test_kernels_gpu.py`` and the GPU chain tests check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from kernels.reference import StateBuffers, compact_reference, gather_reference, row_count, step_reference

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kernels.loader import DeviceState
    from kernels.params import KernelParams

__all__ = ["ExitOps", "ReferenceExitOps", "POISON"]

POISON = -(2**31)  # written by ReferenceExitOps where the kernels leave entries unspecified


class ExitOps(Protocol):
    """Exit step, compaction and gather on torch's current stream (see kernels/README.md)."""

    def step(self, params: KernelParams, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *,
             layer: int, num_layers: int, n_active_dev: torch.Tensor | None = None) -> None: ...

    def compact(self, done: torch.Tensor, active_idx: torch.Tensor, active_idx_out: torch.Tensor,
                keep_rows: torch.Tensor, n_remaining: torch.Tensor, *,
                n_active_dev: torch.Tensor | None = None) -> None: ...

    def gather(self, src: torch.Tensor, keep_rows: torch.Tensor, out: torch.Tensor, *,
               n_rows_dev: torch.Tensor | None = None) -> None: ...


def _count(count_dev: torch.Tensor | None) -> int | None:
    return None if count_dev is None else int(count_dev.reshape(-1)[0])


def _cpu(what: str, tensor: torch.Tensor) -> np.ndarray:
    if tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError(f"{what}: expected a contiguous CPU tensor, found {tensor.device} strides {tensor.stride()}")
    return tensor.numpy()  # shares memory: writes go to the tensor


class ReferenceExitOps:
    """``ExitOps`` on CPU tensors through ``kernels.reference``.

    Where the kernels leave entries unspecified (``active_idx_out`` / ``keep_rows`` past
    ``n_remaining``) this writes ``POISON``, so a chain that reads them fails loudly.
    """

    def step(self, params: KernelParams, logits: torch.Tensor, active_idx: torch.Tensor, state: DeviceState, *,
             layer: int, num_layers: int, n_active_dev: torch.Tensor | None = None) -> None:
        buffers = StateBuffers(**{name: _cpu(f"state.{name}", getattr(state, name)) for name in (
            "prev_label", "prev_value", "counter", "done", "exit_layer", "exit_outputs")})
        step_reference(params, _cpu("logits", logits), _cpu("active_idx", active_idx), buffers, layer=layer,
                       num_layers=num_layers, n_active_dev=_count(n_active_dev))

    def compact(self, done: torch.Tensor, active_idx: torch.Tensor, active_idx_out: torch.Tensor,
                keep_rows: torch.Tensor, n_remaining: torch.Tensor, *,
                n_active_dev: torch.Tensor | None = None) -> None:
        src = _cpu("active_idx", active_idx)
        out_idx, out_rows = _cpu("active_idx_out", active_idx_out), _cpu("keep_rows", keep_rows)
        for what, arr in (("active_idx_out", out_idx), ("keep_rows", out_rows)):
            if arr.size < src.size:
                raise ValueError(f"{what}: expected room for {src.size} entries, found {arr.size}")
        result = compact_reference(_cpu("done", done), src, n_active_dev=_count(n_active_dev))
        m = result.n_remaining
        out_idx[:m], out_rows[:m] = result.active_idx, result.keep_rows
        out_idx[m:src.size], out_rows[m:src.size] = POISON, POISON
        _cpu("n_remaining", n_remaining).reshape(-1)[0] = m

    def gather(self, src: torch.Tensor, keep_rows: torch.Tensor, out: torch.Tensor, *,
               n_rows_dev: torch.Tensor | None = None) -> None:
        dst = _cpu("out", out)
        n = row_count(dst.shape[0], _count(n_rows_dev))
        src_end = src.data_ptr() + src.numel() * src.element_size()
        out_end = out.data_ptr() + out.numel() * out.element_size()
        if n and src.data_ptr() < out_end and out.data_ptr() < src_end:
            raise ValueError("out: expected memory that does not overlap src, found an overlap")
        dst[:n] = gather_reference(_cpu("src", src), _cpu("keep_rows", keep_rows), n_rows=n)
