"""Every buffer of the GPU chain, allocated once per (max batch, max sequence) and reused per request.

Activations live in flat 1-D storages; a request of ``n`` rows and ``S`` tokens views the
prefix of ``n * S * hidden`` elements as a contiguous ``[n, S, hidden]`` tensor, so one
allocation serves every batch and sequence length up to the capacity. Host staging
buffers are pinned (page-locked) on CUDA, so uploads and the final result copy are
asynchronous and the 4-byte active count is read with one event wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kernels.loader import DeviceState
from runtime.gpu.deps import import_torch

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ChainBuffers", "prefix"]


def prefix(flat: torch.Tensor, *shape: int) -> torch.Tensor:
    """The first ``prod(shape)`` elements of a 1-D tensor, viewed as ``shape`` (contiguous)."""
    count = math.prod(shape)
    if flat.dim() != 1 or count > flat.numel():
        raise ValueError(f"expected a 1-D buffer of >= {count} elements for shape {shape}, found {tuple(flat.shape)}")
    return flat[:count].view(*shape)


@dataclass
class ChainBuffers:
    """Device and pinned-host buffers for up to ``capacity`` rows of ``max_seq`` tokens."""

    capacity: int
    max_seq: int
    hidden_size: int
    num_outputs: int
    device: torch.device
    tokens: torch.Tensor  # int64 [2 * capacity * max_seq]: input ids, then token types
    hidden_in: torch.Tensor  # flat [capacity * max_seq * hidden]: the input of every layer
    hidden_out: torch.Tensor  # flat, same size: every layer's output, gathered back into hidden_in
    masks: tuple[torch.Tensor, torch.Tensor]  # int64 flat [capacity * max_seq], ping-pong through gather
    logits: torch.Tensor  # [capacity, C]
    active: tuple[torch.Tensor, torch.Tensor]  # int32 [capacity], packed row -> sample id, ping-pong
    keep_rows: torch.Tensor  # int32 [capacity]
    counts: tuple[torch.Tensor, torch.Tensor]  # int32 [1] device-side active counts, ping-pong
    arange: torch.Tensor  # int32 [capacity] = 0..capacity-1
    state: DeviceState  # per-sample exit state, [capacity]
    host_tokens: torch.Tensor  # int64 [2 * capacity * max_seq], pinned on CUDA
    host_mask: torch.Tensor  # int64 [capacity * max_seq], pinned on CUDA
    host_count: torch.Tensor  # int32 [1], pinned on CUDA
    host_exit_layer: torch.Tensor  # int32 [capacity], pinned on CUDA
    host_outputs: torch.Tensor  # float32 [capacity, C], pinned on CUDA

    @classmethod
    def allocate(cls, *, capacity: int, max_seq: int, hidden_size: int, num_outputs: int, device: Any,
                 hidden_dtype: Any, logits_dtype: Any) -> ChainBuffers:
        """Allocate on ``device`` (on CUDA: call under the chain's stream so the fills run there)."""
        torch = import_torch()
        for what, value in (("capacity", capacity), ("max_seq", max_seq), ("hidden_size", hidden_size),
                            ("num_outputs", num_outputs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what}: expected an integer >= 1, found {value!r}")
        dev = torch.device(device)
        pin = dev.type == "cuda"
        tokens_n, hidden_n = capacity * max_seq, capacity * max_seq * hidden_size

        def zeros(*shape: int, dtype: Any) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=dev)

        def host(*shape: int, dtype: Any) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, pin_memory=pin)

        return cls(
            capacity=capacity,
            max_seq=max_seq,
            hidden_size=hidden_size,
            num_outputs=num_outputs,
            device=dev,
            tokens=zeros(2 * tokens_n, dtype=torch.int64),
            hidden_in=zeros(hidden_n, dtype=hidden_dtype),
            hidden_out=zeros(hidden_n, dtype=hidden_dtype),
            masks=(zeros(tokens_n, dtype=torch.int64), zeros(tokens_n, dtype=torch.int64)),
            logits=zeros(capacity, num_outputs, dtype=logits_dtype),
            active=(zeros(capacity, dtype=torch.int32), zeros(capacity, dtype=torch.int32)),
            keep_rows=zeros(capacity, dtype=torch.int32),
            counts=(zeros(1, dtype=torch.int32), zeros(1, dtype=torch.int32)),
            arange=torch.arange(capacity, dtype=torch.int32, device=dev),
            state=DeviceState.fresh(capacity, num_outputs, dev),
            host_tokens=host(2 * tokens_n, dtype=torch.int64),
            host_mask=host(tokens_n, dtype=torch.int64),
            host_count=host(1, dtype=torch.int32),
            host_exit_layer=host(capacity, dtype=torch.int32),
            host_outputs=host(capacity, num_outputs, dtype=torch.float32),
        )

    def check_fits(self, rows: int, seq: int) -> None:
        if not 1 <= rows <= self.capacity:
            raise ValueError(f"batch: expected 1..{self.capacity} rows (the chain's capacity), found {rows}")
        if not 1 <= seq <= self.max_seq:
            raise ValueError(f"batch: expected 1..{self.max_seq} tokens per row (the chain's capacity), found {seq}")

    def request_state(self, rows: int) -> DeviceState:
        """The first ``rows`` samples' exit state, reset to "running, no history" (on the current stream)."""
        s = self.state
        view = DeviceState(s.prev_label[:rows], s.prev_value[:rows], s.counter[:rows], s.done[:rows],
                           s.exit_layer[:rows], s.exit_outputs[:rows])
        view.prev_label.fill_(-1)
        view.prev_value.fill_(float("nan"))
        view.counter.zero_()
        view.done.zero_()
        view.exit_layer.zero_()
        view.exit_outputs.zero_()
        return view
