"""Exact NumPy model of the buffers that the kernels in ``exit_step.cu`` read and write.

Each function takes the same arguments as its kernel (NumPy arrays instead of device
pointers) and produces the same outputs. The exit decision itself is delegated to the
policies in :mod:`runtime.policies`, the one specification: this module only adds the
packed-batch bookkeeping (per-sample state indexed through ``active_idx``, the exit
buffers, stable compaction and the row gather).

Exactness: patience, regression patience and full depth match the kernels bit for
bit. Entropy and max-prob are float64 here (as in the policies) and fp32 on the
device, so rows whose score is within ~1e-6 of the threshold may differ (fp32
error: about 1e-6 absolute for entropy in nats and for max-prob, i.e. ~1e-6 relative
for scores of order 1; measured max 7e-7 on 1000 classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.params import KernelParams, check_num_classes, kernel_params, policy_for
from kernels.spec import STATE_DTYPES
from runtime.policies import ExitPolicy, ExitState

_LOGIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass
class StateBuffers:
    """Per-original-sample device state (length B), as the kernels lay it out."""

    prev_label: np.ndarray  # int32 [B], -1 = none
    prev_value: np.ndarray  # float32 [B], NaN = none
    counter: np.ndarray  # int32 [B]
    done: np.ndarray  # uint8 [B]
    exit_layer: np.ndarray  # int32 [B], 0 = still running
    exit_outputs: np.ndarray  # float32 [B, C], a row's logits at its exit layer

    @classmethod
    def fresh(cls, batch_size: int, num_classes: int) -> StateBuffers:
        if batch_size < 0 or num_classes < 1:
            raise ValueError(f"expected batch_size >= 0 and num_classes >= 1, found {batch_size}, {num_classes}")
        return cls(
            prev_label=np.full(batch_size, -1, dtype=np.int32),
            prev_value=np.full(batch_size, np.nan, dtype=np.float32),
            counter=np.zeros(batch_size, dtype=np.int32),
            done=np.zeros(batch_size, dtype=np.uint8),
            exit_layer=np.zeros(batch_size, dtype=np.int32),
            exit_outputs=np.zeros((batch_size, num_classes), dtype=np.float32),
        )

    def copy(self) -> StateBuffers:
        return StateBuffers(**{name: getattr(self, name).copy() for name in STATE_DTYPES})

    def validate(self) -> tuple[int, int]:
        """Check dtypes and shapes; return (B, C)."""
        batch = self.done.shape[0] if self.done.ndim == 1 else -1
        for name, dtype in STATE_DTYPES.items():
            arr = getattr(self, name)
            if arr.dtype != np.dtype(dtype):
                raise ValueError(f"state.{name}: expected dtype {dtype}, found {arr.dtype}")
            want_ndim = 2 if name == "exit_outputs" else 1
            if arr.ndim != want_ndim or arr.shape[0] != batch:
                raise ValueError(f"state.{name}: expected {want_ndim}-D with {batch} rows, found shape {arr.shape}")
        return batch, self.exit_outputs.shape[1]


@dataclass(frozen=True)
class CompactResult:
    n_remaining: int
    active_idx: np.ndarray  # int32 [n_remaining], new packed row -> sample id
    keep_rows: np.ndarray  # int32 [n_remaining], new packed row -> old packed row


@dataclass
class ChainResult:
    exit_layer: np.ndarray  # int64 [B], 1-based (0 never happens: the last layer fires)
    outputs: np.ndarray  # float32 [B, C], outputs at each sample's exit layer
    remaining_per_layer: list[int]  # n_active entering each executed layer
    state: StateBuffers


def row_count(n_active: int, n_active_dev: int | None) -> int:
    """What the kernels do with a device-side count: clamp it to the host capacity."""
    if n_active < 0:
        raise ValueError(f"expected n_active >= 0, found {n_active}")
    return n_active if n_active_dev is None else max(0, min(int(n_active_dev), n_active))


def step_reference(
    params: KernelParams,
    logits: np.ndarray,
    active_idx: np.ndarray,
    state: StateBuffers,
    *,
    layer: int,
    num_layers: int,
    n_active_dev: int | None = None,
) -> np.ndarray:
    """Model of ``exit_<kind>_step_<f32|f16>``: update ``state`` in place for the packed rows.

    ``logits`` is [capacity, C] fp32/fp16, ``active_idx`` int32 [capacity]; the first
    ``row_count(capacity, n_active_dev)`` rows are processed. Returns the fired mask of
    those rows (the kernel returns nothing; ``state.done`` carries the same information).
    """
    batch, num_classes = state.validate()
    if logits.ndim != 2 or logits.dtype not in _LOGIT_DTYPES:
        raise ValueError(f"logits: expected 2-D float32/float16, found {logits.ndim}-D {logits.dtype}")
    if active_idx.ndim != 1 or active_idx.dtype != np.int32 or active_idx.shape[0] != logits.shape[0]:
        raise ValueError(
            f"active_idx: expected int32 [{logits.shape[0]}], found {active_idx.dtype} {list(active_idx.shape)}"
        )
    if logits.shape[1] != num_classes:
        raise ValueError(f"logits: expected {num_classes} columns (exit_outputs), found {logits.shape[1]}")
    check_num_classes(params.kind, num_classes)
    n = row_count(logits.shape[0], n_active_dev)
    rows, sids = logits[:n], active_idx[:n].astype(np.int64)
    if n and (sids.min() < 0 or sids.max() >= batch or np.unique(sids).size != n):
        raise ValueError(f"active_idx: expected {n} distinct sample ids in [0, {batch}), found {sids.tolist()[:16]}...")
    if n and state.done[sids].any():
        raise ValueError("active_idx: expected only running samples, found one whose done flag is set")

    policy = policy_for(params)
    spec_state = ExitState(
        prev_label=state.prev_label[sids].astype(np.int64),
        prev_value=state.prev_value[sids].astype(np.float64),
        counter=state.counter[sids].astype(np.int64),
    )
    fired = policy.step(spec_state, rows, layer, num_layers)
    # Write back exactly the buffers the kernel of this kind writes.
    if params.kind == "patience":
        state.prev_label[sids] = spec_state.prev_label.astype(np.int32)
        state.counter[sids] = spec_state.counter.astype(np.int32)
    elif params.kind == "regression-patience":
        state.prev_value[sids] = spec_state.prev_value.astype(np.float32)  # exact: values came from fp32/fp16
        state.counter[sids] = spec_state.counter.astype(np.int32)
    exited = sids[fired]
    state.done[exited] = 1
    state.exit_layer[exited] = layer
    state.exit_outputs[exited] = rows[fired].astype(np.float32)
    return fired


def compact_reference(
    done: np.ndarray, active_idx: np.ndarray, *, n_active_dev: int | None = None
) -> CompactResult:
    """Model of ``exit_compact``: stable list of the packed rows whose sample is not done."""
    if done.dtype != np.uint8 or active_idx.dtype != np.int32:
        raise ValueError(f"expected done uint8 and active_idx int32, found {done.dtype} and {active_idx.dtype}")
    n = row_count(active_idx.shape[0], n_active_dev)
    keep = done[active_idx[:n]] == 0
    keep_rows = np.flatnonzero(keep).astype(np.int32)
    return CompactResult(int(keep_rows.size), active_idx[keep_rows].astype(np.int32), keep_rows)


def gather_reference(src: np.ndarray, keep_rows: np.ndarray, *, n_rows: int | None = None,
                     n_rows_dev: int | None = None) -> np.ndarray:
    """Model of ``gather_rows``: ``out[r] = src[keep_rows[r]]`` for the first n rows."""
    if keep_rows.dtype != np.int32 or keep_rows.ndim != 1:
        raise ValueError(f"keep_rows: expected 1-D int32, found {keep_rows.ndim}-D {keep_rows.dtype}")
    n = row_count(keep_rows.shape[0] if n_rows is None else n_rows, n_rows_dev)
    rows = keep_rows[:n]
    if n and (rows.min() < 0 or rows.max() >= src.shape[0]):
        raise ValueError(f"keep_rows: expected rows in [0, {src.shape[0]}), found {rows.min()}..{rows.max()}")
    return src[rows].copy()


def run_chain_reference(policy: ExitPolicy, layer_outputs: np.ndarray, *, seq_len: int = 3) -> ChainResult:
    """Drive the step/compact/gather models over every layer of a trace ``[L, B, C]``.

    The "model" of each layer reads its rows' sample ids from a packed int64 payload
    (standing in for the attention mask / hidden states) that travels only through
    ``gather_reference`` with ``keep_rows``, while the state is indexed by
    ``active_idx``: a compaction or gather error therefore shows up as wrong outputs.
    The result must equal ``runtime.policies.replay(policy, layer_outputs)``.
    """
    if layer_outputs.ndim != 3:
        raise ValueError(f"layer_outputs: expected [layers, batch, classes], found shape {layer_outputs.shape}")
    num_layers, batch, num_classes = layer_outputs.shape
    params = kernel_params(policy)
    state = StateBuffers.fresh(batch, num_classes)
    active_idx = np.arange(batch, dtype=np.int32)
    payload = np.repeat(np.arange(batch, dtype=np.int64)[:, None], seq_len, axis=1)  # [n, S]
    remaining: list[int] = []
    for layer in range(1, num_layers + 1):
        if active_idx.size == 0:
            break
        remaining.append(int(active_idx.size))
        logits = np.ascontiguousarray(layer_outputs[layer - 1, payload[:, 0]])
        step_reference(params, logits, active_idx, state, layer=layer, num_layers=num_layers)
        result = compact_reference(state.done, active_idx)
        payload = gather_reference(payload, result.keep_rows, n_rows=result.n_remaining)
        active_idx = result.active_idx
    return ChainResult(state.exit_layer.astype(np.int64), state.exit_outputs, remaining, state)
