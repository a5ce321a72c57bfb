"""The NumPy model of the exit kernels against runtime.policies (the specification)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import reference as ref
from kernels.params import KernelParams, kernel_params, policy_for
from kernels.reference import StateBuffers, compact_reference, gather_reference, run_chain_reference, step_reference
from kernels.testing import REGRESSION_TAU, entropy_scores, make_trace, max_prob_scores, pick_threshold
from runtime.policies import (
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    PolicyError,
    RegressionPatiencePolicy,
    replay,
)
from runtime.policies import entropy as spec_entropy

LAYERS = 6
BATCHES = (1, 7, 4096)
CLASSES = (2, 3, 1000)
_TRACES: dict[tuple[int, int, int], np.ndarray] = {}


def trace_for(batch: int, classes: int, seed: int = 0) -> np.ndarray:
    key = (batch, classes, seed)
    if key not in _TRACES:
        _TRACES[key] = make_trace(np.random.default_rng([seed, batch, classes]), LAYERS, batch, classes)
    return _TRACES[key]


def classification_policies(trace: np.ndarray) -> list[ExitPolicy]:
    ent, top = entropy_scores(trace), max_prob_scores(trace)
    return [
        FullDepthPolicy(),
        PatiencePolicy(1),
        PatiencePolicy(2),
        PatiencePolicy(LAYERS + 1),  # never reached: everyone exits at the last layer
        EntropyPolicy(pick_threshold(ent, 0.3, low=0.0)),  # a score itself: tests the strict <
        MaxProbPolicy(pick_threshold(top, 0.7, low=0.0, high=1.0)),  # a score itself: tests >=
        MaxProbPolicy(1.0),
    ]


def assert_same_as_replay(policy: ExitPolicy, trace: np.ndarray) -> None:
    got = run_chain_reference(policy, trace)
    want = replay(policy, trace)
    np.testing.assert_array_equal(got.exit_layer, want.exit_layer, err_msg=f"exit layers differ for {policy}")
    np.testing.assert_array_equal(got.outputs, want.outputs.astype(np.float32),
                                  err_msg=f"outputs at exit differ for {policy}")
    counts = np.bincount(want.exit_layer, minlength=LAYERS + 1)
    expected_remaining = [trace.shape[1] - int(counts[:layer].sum()) for layer in range(1, LAYERS + 1)]
    assert got.remaining_per_layer == [n for n in expected_remaining if n > 0]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_chain_equals_replay_classification(batch: int, classes: int, dtype: str) -> None:
    trace = trace_for(batch, classes).astype(dtype)
    for policy in classification_policies(trace):
        assert_same_as_replay(policy, trace)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("tau", [REGRESSION_TAU, 0.3, 1e-9])
def test_chain_equals_replay_regression(batch: int, dtype: str, patience: int, tau: float) -> None:
    trace = trace_for(batch, 1).astype(dtype)
    assert_same_as_replay(RegressionPatiencePolicy(patience, tau), trace)


def test_traces_exercise_the_edge_cases() -> None:
    """Guard the generator: the equivalence tests are only as good as their data."""
    trace = trace_for(4096, 3)
    labels = np.argmax(np.nan_to_num(trace, nan=-np.inf), axis=2)
    top = np.max(np.nan_to_num(trace, nan=-np.inf), axis=2, keepdims=True)
    ties = (trace == top).sum(axis=2) > 1
    assert ties.mean() > 0.05
    assert np.isnan(trace).any(axis=2).mean() > 0.02
    assert np.isposinf(trace).any(axis=2).mean() > 0.001
    assert np.isneginf(trace).all(axis=2).mean() > 0.001
    assert (labels[1:] == labels[:-1]).mean() > 0.3  # predictions persist, so patience fires early
    exits = replay(PatiencePolicy(2), trace).exit_layer
    assert len(np.unique(exits)) >= 3
    reg = trace_for(4096, 1)[:, :, 0].astype(np.float64)
    with np.errstate(invalid="ignore"):
        assert (np.abs(np.diff(reg, axis=0)) == REGRESSION_TAU).mean() > 0.05


# ----------------------------------------------------------------------------- hand-checked steps


def run_steps(
    params: KernelParams, rows: list[list[float]], *, num_layers: int = 10
) -> tuple[StateBuffers, list[bool]]:
    """One sample, one row per layer; returns the final state and which layers fired."""
    state = StateBuffers.fresh(1, len(rows[0]))
    fired = []
    for layer, row in enumerate(rows, start=1):
        f = step_reference(params, np.array([row], dtype=np.float32), np.array([0], dtype=np.int32), state,
                           layer=layer, num_layers=num_layers)
        fired.append(bool(f[0]))
        state.done[:] = 0  # keep the sample running to watch its counter
    return state, fired


def test_patience_counts_agreements_and_ties_go_to_lowest_index() -> None:
    params = KernelParams("patience", patience=2)
    # labels: 0 (tie 0/1), 0, 1 (tie 1/2), 1, 1 -> counters 0,1,0,1,2 -> fires at layer 5
    state, fired = run_steps(params, [[1, 1, 0], [5, 1, 1], [0, 3, 3], [0, 2, 1], [-1, 7, 7]])
    assert fired == [False, False, False, False, True]
    assert state.prev_label.tolist() == [1] and state.counter.tolist() == [2]


def test_nan_row_resets_and_cannot_be_agreed_with() -> None:
    params = KernelParams("patience", patience=1)
    nan = float("nan")
    # labels 0, NaN(-1), 0, 0: the NaN row resets, the row after it cannot agree with it
    state, fired = run_steps(params, [[2, 1], [nan, 5], [2, 1], [2, 1]])
    assert fired == [False, False, False, True]
    state, _ = run_steps(params, [[2, 1], [nan, 5]])
    assert state.prev_label.tolist() == [-1] and state.counter.tolist() == [0]


def test_last_layer_fires_even_for_nan_and_stores_outputs() -> None:
    state = StateBuffers.fresh(3, 2)
    logits = np.array([[np.nan, 1.0], [0.0, 0.0], [3.0, -1.0]], dtype=np.float32)
    fired = step_reference(KernelParams("entropy", threshold=1e-3), logits, np.array([2, 0, 1], dtype=np.int32),
                           state, layer=4, num_layers=4)
    assert fired.tolist() == [True, True, True]
    assert state.exit_layer.tolist() == [4, 4, 4] and state.done.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(state.exit_outputs, logits[[1, 2, 0]])  # rows land at their sample ids


def test_regression_compares_strictly_below_tau_per_sample() -> None:
    params = KernelParams("regression-patience", patience=2, tau=0.25)
    state = StateBuffers.fresh(2, 1)
    values = {1: [1.0, 1.25, 1.375, 1.5], 0: [0.0, 0.1, 0.2, 0.3]}
    # sample 1: diffs 0.25 (== tau: no), 0.125, 0.125 -> counters 0, 0, 1, 2 -> exits at layer 4
    # sample 0: diffs 0.1, 0.1 -> counters 0, 1, 2 -> exits at layer 3
    ids = np.array([1, 0], dtype=np.int32)
    fired = []
    for layer in range(1, 5):
        logits = np.array([[values[s][layer - 1]] for s in ids.tolist()], dtype=np.float32)
        fired.append(step_reference(params, logits, ids, state, layer=layer, num_layers=9).tolist())
        ids = compact_reference(state.done, ids).active_idx
    assert fired == [[False, False], [False, False], [False, True], [True]]
    assert state.exit_layer.tolist() == [3, 4]
    assert state.counter.tolist() == [2, 2]


def test_entropy_and_max_prob_thresholds() -> None:
    two_equal = [[0.0, 0.0]]  # entropy ln 2, max-prob 0.5
    assert run_steps(KernelParams("entropy", threshold=0.7), two_equal)[1] == [True]
    assert run_steps(KernelParams("entropy", threshold=float(np.log(2))), two_equal)[1] == [False]  # strict
    assert run_steps(KernelParams("max-prob", threshold=0.5), two_equal)[1] == [True]  # >=
    assert run_steps(KernelParams("max-prob", threshold=0.51), two_equal)[1] == [False]
    assert run_steps(KernelParams("entropy", threshold=1e-3), [[-np.inf, 0.0]])[1] == [True]  # one-hot
    assert run_steps(KernelParams("max-prob", threshold=1.0), [[-np.inf, 0.0]])[1] == [True]
    # NaN-free rows with an undefined softmax (a +inf logit, or all -inf): the specification's
    # entropy() drops the NaN probabilities and returns 0, so the entropy rule fires, while
    # max-prob sees a NaN maximum and does not. The kernels mirror this quirk.
    for row in ([np.inf, 0.0], [np.inf, np.inf], [-np.inf, -np.inf]):
        with np.errstate(invalid="ignore"):
            assert spec_entropy(np.array([row])).tolist() == [0.0]
        assert run_steps(KernelParams("entropy", threshold=1e-9), [row])[1] == [True]
        assert run_steps(KernelParams("max-prob", threshold=0.01), [row])[1] == [False]
    assert run_steps(KernelParams("entropy", threshold=10.0), [[np.nan, 0.0]])[1] == [False]
    assert run_steps(KernelParams("max-prob", threshold=0.01), [[np.nan, 0.0]])[1] == [False]


def test_step_touches_only_its_own_buffers() -> None:
    rng = np.random.default_rng(5)
    state = StateBuffers.fresh(16, 4)
    state.prev_label[:] = rng.integers(-1, 4, 16)
    state.counter[:] = rng.integers(0, 3, 16)
    state.prev_value[:] = rng.standard_normal(16)
    logits = rng.standard_normal((16, 4)).astype(np.float32)
    ids = rng.permutation(16).astype(np.int32)
    before = state.copy()
    step_reference(KernelParams("entropy", threshold=1.0), logits, ids, state, layer=1, num_layers=3)
    for name in ("prev_label", "prev_value", "counter"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))
    before = state.copy()
    state.done[:] = 0
    step_reference(KernelParams("patience", patience=5), logits, ids, state, layer=1, num_layers=3)
    np.testing.assert_array_equal(state.prev_value, before.prev_value)


def test_device_count_limits_the_rows_processed() -> None:
    state = StateBuffers.fresh(8, 2)
    logits = np.zeros((8, 2), dtype=np.float32)
    ids = np.arange(8, dtype=np.int32)[::-1].copy()
    fired = step_reference(KernelParams("full"), logits, ids, state, layer=2, num_layers=2, n_active_dev=3)
    assert fired.size == 3
    assert state.done.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    clamped = step_reference(KernelParams("full"), logits[:2], ids[:2].copy() - 6, state.copy(), layer=2,
                             num_layers=2, n_active_dev=99)
    assert clamped.size == 2


def test_bad_arguments_are_rejected() -> None:
    state = StateBuffers.fresh(4, 3)
    ids = np.arange(4, dtype=np.int32)
    with pytest.raises(ValueError, match="float32/float16"):
        step_reference(KernelParams("full"), np.zeros((4, 3)), ids, state, layer=1, num_layers=2)
    with pytest.raises(PolicyError, match="one output per row"):
        step_reference(KernelParams("regression-patience", 1, 0.1), np.zeros((4, 3), np.float32), ids, state,
                       layer=1, num_layers=2)
    with pytest.raises(PolicyError, match="patience"):
        step_reference(KernelParams("patience", 0), np.zeros((4, 3), np.float32), ids, state, layer=1, num_layers=2)
    with pytest.raises(ValueError, match="distinct"):
        step_reference(KernelParams("full"), np.zeros((4, 3), np.float32), np.array([0, 0, 1, 2], np.int32), state,
                       layer=1, num_layers=2)
    with pytest.raises(PolicyError, match="layer"):
        step_reference(KernelParams("full"), np.zeros((4, 3), np.float32), ids, state, layer=3, num_layers=2)
    state.prev_label = state.prev_label.astype(np.int64)
    with pytest.raises(ValueError, match="prev_label: expected dtype int32"):
        state.validate()


@pytest.mark.parametrize("policy", [FullDepthPolicy(), PatiencePolicy(3), RegressionPatiencePolicy(2, 0.5),
                                    EntropyPolicy(0.3), MaxProbPolicy(0.9)])
def test_kernel_params_round_trip(policy: ExitPolicy) -> None:
    assert policy_for(kernel_params(policy)) == policy


# ----------------------------------------------------------------------------- compaction, gather


def naive_compact(done: np.ndarray, active_idx: np.ndarray) -> tuple[list[int], list[int]]:
    kept_ids, kept_rows = [], []
    for row, sid in enumerate(active_idx.tolist()):
        if done[sid] == 0:
            kept_ids.append(sid)
            kept_rows.append(row)
    return kept_ids, kept_rows


@pytest.mark.parametrize("n_active", [0, 1, 7, 4095, 4096, 4097, 100_000])
@pytest.mark.parametrize("done_rate", [0.0, 0.3, 1.0])
def test_compaction_is_stable_and_complete(n_active: int, done_rate: float) -> None:
    rng = np.random.default_rng(n_active)
    batch = n_active + 13
    done = (rng.random(batch) < done_rate).astype(np.uint8)
    active_idx = rng.permutation(batch)[:n_active].astype(np.int32)
    result = compact_reference(done, active_idx)
    kept_ids, kept_rows = naive_compact(done, active_idx)
    assert result.n_remaining == len(kept_ids)
    assert result.active_idx.dtype == np.int32 and result.keep_rows.dtype == np.int32
    assert result.active_idx.tolist() == kept_ids
    assert result.keep_rows.tolist() == kept_rows
    assert np.all(np.diff(result.keep_rows) > 0)  # stable: relative order kept


def test_compaction_with_device_count() -> None:
    done = np.array([0, 1, 0, 0, 1, 0], dtype=np.uint8)
    active_idx = np.array([5, 4, 3, 2, 1, 0], dtype=np.int32)
    result = compact_reference(done, active_idx, n_active_dev=4)  # rows 0..3 -> samples 5,4,3,2
    assert result.active_idx.tolist() == [5, 3, 2] and result.keep_rows.tolist() == [0, 2, 3]
    assert compact_reference(done, active_idx, n_active_dev=0).n_remaining == 0


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (4096, 2, 8), (1, 1, 1)])
def test_gather_rows(dtype: str, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    src = (rng.standard_normal(shape) * 100).astype(dtype)
    if dtype == "int64":
        src = src[..., 0].copy()  # an attention mask [n, S]
    keep_rows = np.sort(rng.choice(shape[0], size=max(1, shape[0] // 2), replace=False)).astype(np.int32)
    out = gather_reference(src, keep_rows)
    assert out.shape == (keep_rows.size,) + src.shape[1:] and out.dtype == src.dtype
    for r, row in enumerate(keep_rows.tolist()):
        np.testing.assert_array_equal(out[r], src[row])
    assert gather_reference(src, keep_rows, n_rows_dev=0).shape[0] == 0
    with pytest.raises(ValueError, match="keep_rows"):
        gather_reference(src, np.array([shape[0]], dtype=np.int32))


def test_chain_comparison_detects_a_misaligned_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    """Meta-test: keep_rows that disagree with active_idx must make the chain differ from replay."""
    trace = trace_for(7, 3)
    policy = PatiencePolicy(1)
    real = ref.compact_reference

    def broken(done: np.ndarray, active_idx: np.ndarray, **kw: object) -> ref.CompactResult:
        good = real(done, active_idx, **kw)
        return ref.CompactResult(good.n_remaining, good.active_idx, good.keep_rows[::-1].copy())

    monkeypatch.setattr(ref, "compact_reference", broken)
    got = run_chain_reference(policy, trace)
    want = replay(policy, trace)
    assert not (np.array_equal(got.exit_layer, want.exit_layer)
                and np.array_equal(got.outputs, want.outputs, equal_nan=True))
