"""The early-exit chain on one CUDA stream, with the exit decision made on the device.

Per request: upload the token tensors (one pinned host->device copy each), run the
embeddings, then for every layer

1. the executor runs the layer on the active rows (``hidden_in`` -> ``hidden_out``, ``logits``);
2. the exit kernel updates each row's exit state and stores the logits of rows that exit;
3. compaction lists the rows that keep running (their sample ids and old row numbers) and
   writes the count to a device int32;
4. gather packs those rows' hidden states (back into ``hidden_in``) and attention masks;
5. every ``check_every`` layers the host reads the 4-byte count from pinned memory after
   an event (the only host sync inside the chain) and stops when no row is left. Between
   checks the kernels read the exact count on the device, and the engines run on the
   last count the host knows (an upper bound), so only time is lost, never correctness.

Nothing else crosses to the host until the end, where the exit layers and exit outputs
are copied once. Buffers come from ``ChainBuffers``, allocated once per (max batch, max
sequence). Unlike ``runtime.chain.run_chain`` the sequence width is not trimmed as rows
leave (that would need the remaining rows' lengths on the host); padding is masked, so
results agree up to floating-point summation order.

The same code runs on CPU tensors with ``runtime.gpu.ops.ReferenceExitOps`` (no stream,
no pinned memory), which is how the orchestration is tested without a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from kernels.params import kernel_params
from runtime.chain import ChainResult
from runtime.gpu.buffers import ChainBuffers, prefix
from runtime.gpu.deps import import_torch

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runtime.gpu.executors import DeviceExecutor
    from runtime.gpu.ops import ExitOps
    from runtime.policies import ExitPolicy
    from runtime.tokenization import EncodedBatch

__all__ = ["GpuChain", "GpuChainResult", "capacity_for", "padded_seq", "run_chain_gpu"]


@dataclass
class GpuChainResult(ChainResult):
    """``runtime.chain.ChainResult`` plus what the device chain did to get it."""

    host_syncs: int = 0  # host waits on the device: count reads plus the final copy
    rows_per_layer: tuple[int, ...] = ()  # rows each executed layer ran (before bucket padding)


def padded_seq(seq: int, multiple: int, max_seq: int) -> int:
    """``seq`` rounded up to a multiple of ``multiple``, at most ``max_seq`` (fewer shapes for CUDA graphs)."""
    if multiple < 1:
        raise ValueError(f"seq multiple: expected an integer >= 1, found {multiple}")
    if not 1 <= seq <= max_seq:
        raise ValueError(f"sequence length: expected 1..{max_seq}, found {seq}")
    return min(max_seq, -(-seq // multiple) * multiple)


def capacity_for(executor: DeviceExecutor, max_batch: int, max_seq: int) -> tuple[int, int]:
    """(rows, tokens) capacity within what the executor accepts (TensorRT: its optimisation profile)."""
    base = getattr(executor, "inner", executor)  # CudaGraphExecutor wraps another executor
    rows, seqs = getattr(base, "rows_range", None), getattr(base, "seq_range", None)
    return (min(max_batch, rows[1]) if rows else max_batch), (min(max_seq, seqs[1]) if seqs else max_seq)


class GpuChain:
    """An executor, the exit ops and preallocated buffers for batches up to ``capacity`` x ``max_seq``.

    On CUDA everything is enqueued on ``stream`` (a new one when ``None``); the executor and
    the exit ops must launch on torch's current stream, which this class sets. Not thread-safe:
    use one ``GpuChain`` per thread.
    """

    def __init__(self, executor: DeviceExecutor, ops: ExitOps, *, capacity: int, max_seq: int,
                 stream: Any = None, seq_multiple: int = 1) -> None:
        torch = import_torch()
        self._torch = torch
        self.executor = executor
        self.ops = ops
        self.device = executor.device
        self.seq_multiple = seq_multiple
        self.is_cuda = self.device.type == "cuda"
        if self.is_cuda:
            self.stream = stream if stream is not None else torch.cuda.Stream(self.device)
            self._event = torch.cuda.Event()
        elif stream is not None:
            raise ValueError(f"stream: expected None for a {self.device} executor, found {stream!r}")
        else:
            self.stream = None
        with self.on_stream():
            self.buffers = ChainBuffers.allocate(
                capacity=capacity, max_seq=max_seq, hidden_size=executor.hidden_size,
                num_outputs=executor.num_outputs, device=self.device, hidden_dtype=executor.hidden_dtype,
                logits_dtype=executor.logits_dtype)

    @contextlib.contextmanager
    def on_stream(self) -> Iterator[None]:
        """Make the chain's stream torch's current stream (nothing on CPU)."""
        if self.stream is None:
            yield
        else:
            with self._torch.cuda.stream(self.stream):
                yield

    # ------------------------------------------------------------------ host <-> device

    def _wait(self) -> None:
        """Block the host until everything enqueued so far has run (one host sync)."""
        if self.is_cuda:
            self._event.record(self.stream)
            self._event.synchronize()

    def _read_count(self, count_dev: torch.Tensor) -> int:
        host = self.buffers.host_count
        host.copy_(count_dev, non_blocking=self.is_cuda)
        self._wait()
        return int(host[0])

    def upload(self, batch: EncodedBatch) -> tuple[int, int]:
        """Pad to the chain's sequence bucket and copy ids, types and mask to the device; -> (rows, seq).

        Enqueued on the current stream: call under ``on_stream()``.
        """
        rows, width = batch.input_ids.shape
        self.buffers.check_fits(rows, width)
        seq = padded_seq(width, self.seq_multiple, self.buffers.max_seq)
        torch = self._torch
        host_tokens = prefix(self.buffers.host_tokens, 2, rows, seq)
        host_mask = prefix(self.buffers.host_mask, rows, seq)
        host_tokens.zero_()
        host_mask.zero_()
        host_tokens[0, :, :width] = torch.from_numpy(np.ascontiguousarray(batch.input_ids, dtype=np.int64))
        host_tokens[1, :, :width] = torch.from_numpy(np.ascontiguousarray(batch.token_type_ids, dtype=np.int64))
        host_mask[:, :width] = torch.from_numpy(np.ascontiguousarray(batch.attention_mask, dtype=np.int64))
        prefix(self.buffers.tokens, 2, rows, seq).copy_(host_tokens, non_blocking=self.is_cuda)
        prefix(self.buffers.masks[0], rows, seq).copy_(host_mask, non_blocking=self.is_cuda)
        return rows, seq

    def _download(self, rows: int, exit_layer: torch.Tensor, outputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        host_layer = self.buffers.host_exit_layer[:rows]
        host_out = self.buffers.host_outputs[:rows]
        host_layer.copy_(exit_layer, non_blocking=self.is_cuda)
        host_out.copy_(outputs, non_blocking=self.is_cuda)
        self._wait()
        return host_layer.numpy().astype(np.int64), host_out.numpy().copy()

    # ------------------------------------------------------------------ the chain

    def _embed(self, rows: int, seq: int) -> None:
        tokens = prefix(self.buffers.tokens, 2, rows, seq)
        hidden = prefix(self.buffers.hidden_in, rows, seq, self.executor.hidden_size)
        self.executor.embed(tokens[0], tokens[1], hidden)

    def _layer(self, index: int, n: int, seq: int, mask_slot: int, swap_hidden: bool = False) -> None:
        b, ex = self.buffers, self.executor
        rows = ex.padded_rows(n, b.capacity)
        if not n <= rows <= b.capacity:
            raise RuntimeError(f"executor padded_rows({n}, {b.capacity}): expected {n}..{b.capacity}, found {rows}")
        src, dst = (b.hidden_out, b.hidden_in) if swap_hidden else (b.hidden_in, b.hidden_out)
        ex.layer(index, prefix(src, rows, seq, ex.hidden_size), prefix(b.masks[mask_slot], rows, seq),
                 prefix(dst, rows, seq, ex.hidden_size), b.logits[:rows])

    def run(self, batch: EncodedBatch, policy: ExitPolicy, *, check_every: int = 1) -> GpuChainResult:
        """Early exit with ``policy``; results in input order, as ``runtime.chain.run_chain``."""
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every: expected an integer >= 1, found {check_every!r}")
        params = kernel_params(policy)
        b, ex, ops = self.buffers, self.executor, self.ops
        num_layers = ex.num_layers
        with self.on_stream():
            rows, seq = self.upload(batch)
            state = b.request_state(rows)
            b.active[0][:rows].copy_(b.arange[:rows])
            self._embed(rows, seq)
            n_host = rows  # rows the host knows may be active (exact right after a check)
            count_dev: torch.Tensor | None = None  # the exact count on the device, when n_host is stale
            slot, syncs, ran = 0, 0, []
            for index in range(num_layers):
                layer = index + 1
                ran.append(n_host)
                self._layer(index, n_host, seq, slot)
                ops.step(params, b.logits[:n_host], b.active[slot][:n_host], state, layer=layer,
                         num_layers=num_layers, n_active_dev=count_dev)
                if layer == num_layers:
                    break  # the last layer fires for every row: nothing to compact
                nxt = 1 - slot
                n_remaining = b.counts[nxt]
                ops.compact(state.done, b.active[slot][:n_host], b.active[nxt][:n_host], b.keep_rows[:n_host],
                            n_remaining, n_active_dev=count_dev)
                ops.gather(prefix(b.hidden_out, n_host, seq, ex.hidden_size), b.keep_rows,
                           prefix(b.hidden_in, n_host, seq, ex.hidden_size), n_rows_dev=n_remaining)
                ops.gather(prefix(b.masks[slot], n_host, seq), b.keep_rows, prefix(b.masks[nxt], n_host, seq),
                           n_rows_dev=n_remaining)
                slot = nxt
                if layer % check_every == 0:
                    n_host, count_dev = self._read_count(n_remaining), None
                    syncs += 1
                    if n_host == 0:
                        break
                else:
                    count_dev = n_remaining
            exit_layer, outputs = self._download(rows, state.exit_layer, state.exit_outputs)
            syncs += 1
        _check_exits(exit_layer, num_layers)
        return GpuChainResult(exit_layer, outputs, host_syncs=syncs, rows_per_layer=tuple(ran))

    def enqueue_full_depth(self, rows: int, seq: int) -> None:
        """Embeddings and every layer on the uploaded batch, no exit kernels; last outputs in ``logits``.

        Only enqueues (on the current stream), so ``runtime.gpu.graphs.WholeModelGraph`` can capture it.
        """
        self._embed(rows, seq)
        for index in range(self.executor.num_layers):  # hidden states ping-pong between the two buffers
            self._layer(index, rows, seq, 0, swap_hidden=index % 2 == 1)

    def run_layers(self, batch: EncodedBatch) -> GpuChainResult:
        """Every layer on every row with no exit kernels (the baseline the exit-step overhead is measured against).

        Returns the last layer's outputs as exits at the last layer; one host sync (the final copy).
        """
        b, num_layers = self.buffers, self.executor.num_layers
        with self.on_stream():
            rows, seq = self.upload(batch)
            self.enqueue_full_depth(rows, seq)
            last = b.state.exit_layer[:rows]
            last.fill_(num_layers)
            exit_layer, outputs = self._download(rows, last, b.logits[:rows].float())
        return GpuChainResult(exit_layer, outputs, host_syncs=1, rows_per_layer=(rows,) * num_layers)


def _check_exits(exit_layer: np.ndarray, num_layers: int) -> None:
    bad = np.flatnonzero((exit_layer < 1) | (exit_layer > num_layers))
    if bad.size:
        raise RuntimeError(
            f"device chain: expected every sample to exit at a layer in 1..{num_layers}, found exit layers "
            f"{exit_layer[bad[:8]].tolist()} for samples {bad[:8].tolist()}"
        )


def run_chain_gpu(executor: DeviceExecutor, batch: EncodedBatch, policy: ExitPolicy, kernels: ExitOps,
                  stream: Any = None, check_every: int = 1) -> GpuChainResult:
    """One-shot ``GpuChain`` sized for ``batch`` (servers keep a ``GpuChain`` and call ``run``)."""
    rows, width = batch.input_ids.shape
    chain = GpuChain(executor, kernels, capacity=rows, max_seq=width, stream=stream)
    return chain.run(batch, policy, check_every=check_every)
