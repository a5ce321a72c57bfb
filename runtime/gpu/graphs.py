"""CUDA graphs for the GPU chain.

* ``CudaGraphExecutor`` wraps a ``DeviceExecutor``: each layer call replays a graph captured
  for (layer, rows, sequence, buffer addresses). Rows are bucketed to powers of two (the
  chain pads the active rows up to the bucket; rows never interact, so the padding rows'
  contents do not matter) and the chain can bucket the sequence (``GpuChain(seq_multiple=)``,
  padding positions masked), so few graphs serve every request. Capture follows the rules
  for TensorRT: one normal run and a synchronisation first, then the capture; TensorRT's
  enqueue result is checked after the capture has ended (``check_captured``).
* ``WholeModelGraph``: embeddings and every layer of one (batch, sequence) in a single graph,
  no exit kernels: the lower bound a full-depth chain is compared with.

The embeddings step is not graphed in ``CudaGraphExecutor`` (it runs once per request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.gpu.deps import require_cuda

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runtime.gpu.chain import GpuChain
    from runtime.gpu.executors import DeviceExecutor
    from runtime.tokenization import EncodedBatch

__all__ = ["CudaGraphExecutor", "WholeModelGraph", "next_power_of_two", "row_bucket"]


def next_power_of_two(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected an integer >= 1, found {n!r}")
    return 1 << (n - 1).bit_length()


def row_bucket(n: int, capacity: int) -> int:
    """The power of two >= ``n`` rows, at most ``capacity`` (then ``capacity`` itself)."""
    if not 1 <= n <= capacity:
        raise ValueError(f"rows: expected 1..{capacity}, found {n}")
    return min(capacity, next_power_of_two(n))


def _check_captured(executor: Any) -> None:
    check = getattr(executor, "check_captured", None)
    if check is not None:
        check()


class CudaGraphExecutor:
    """A ``DeviceExecutor`` whose layers replay CUDA graphs of ``inner``'s layers."""

    def __init__(self, inner: DeviceExecutor, *, warmup: int = 1) -> None:
        torch, dev = require_cuda(inner.device)
        if warmup < 1:
            raise ValueError(f"warmup: expected >= 1 normal run before a capture, found {warmup}")
        self._torch = torch
        self.inner = inner
        self.warmup = warmup
        self.device = dev
        self.num_layers = inner.num_layers
        self.num_outputs = inner.num_outputs
        self.hidden_size = inner.hidden_size
        self.hidden_dtype = inner.hidden_dtype
        self.logits_dtype = inner.logits_dtype
        # One memory pool for all graphs: they replay one at a time on one stream and write their
        # results into the chain's buffers, so their temporaries are dead between replays.
        self._pool = torch.cuda.graph_pool_handle()
        self._graphs: dict[tuple, torch.cuda.CUDAGraph] = {}

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def padded_rows(self, n: int, capacity: int) -> int:
        return max(row_bucket(n, capacity), self.inner.padded_rows(n, capacity))

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, out: torch.Tensor) -> None:
        self.inner.embed(input_ids, token_type_ids, out)

    def layer(self, index: int, hidden: torch.Tensor, attention_mask: torch.Tensor, out_hidden: torch.Tensor,
              out_logits: torch.Tensor) -> None:
        tensors = (hidden, attention_mask, out_hidden, out_logits)
        key = (index, *(tuple(t.shape) for t in tensors), *(t.data_ptr() for t in tensors))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._capture(index, tensors)
            self._graphs[key] = graph
        graph.replay()

    def _capture(self, index: int, tensors: tuple[torch.Tensor, ...]) -> torch.cuda.CUDAGraph:
        torch = self._torch
        stream = torch.cuda.current_stream(self.device)
        for _ in range(self.warmup):  # TensorRT: one normal enqueue before capturing
            self.inner.layer(index, *tensors)
        _check_captured(self.inner)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=stream):
            self.inner.layer(index, *tensors)
        _check_captured(self.inner)  # outside the capture
        return graph


class WholeModelGraph:
    """Embeddings and all layers of one uploaded batch as a single CUDA graph (no exit kernels)."""

    def __init__(self, chain: GpuChain, batch: EncodedBatch, *, warmup: int = 1) -> None:
        torch, _ = require_cuda(chain.device)
        if isinstance(chain.executor, CudaGraphExecutor):
            raise ValueError("WholeModelGraph: expected a chain over a plain executor, found a CudaGraphExecutor "
                             "(graphs cannot be captured inside a capture)")
        self._torch = torch
        self.chain = chain
        with chain.on_stream():
            self.rows, self.seq = chain.upload(batch)
            for _ in range(max(1, warmup)):
                chain.enqueue_full_depth(self.rows, self.seq)
            _check_captured(chain.executor)
            chain.stream.synchronize()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=chain.stream):
                chain.enqueue_full_depth(self.rows, self.seq)
            _check_captured(chain.executor)

    def replay(self) -> None:
        """Enqueue the whole model on the chain's stream (returns without waiting)."""
        with self.chain.on_stream():
            self.graph.replay()

    def run(self, batch: EncodedBatch) -> Any:
        """Upload ``batch`` (same rows and padded length as the captured one), replay, return the
        last layer's outputs as float32 numpy (one host sync)."""
        with self.chain.on_stream():
            rows, seq = self.chain.upload(batch)
            if (rows, seq) != (self.rows, self.seq):
                raise ValueError(f"batch: expected {self.rows} rows x {self.seq} tokens (the captured shape), "
                                 f"found {rows} x {seq}")
            self.graph.replay()
            return self.logits().float().cpu().numpy()

    def logits(self) -> torch.Tensor:
        """The last layer's outputs of the last replay (device tensor; synchronise before reading)."""
        return self.chain.buffers.logits[: self.rows]
