"""Slowdown metrics on hand-made exit lists, latencies and attack results; the latency protocol."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.attacks.goals import GoalResult, GoalStatus
from benchmarks.attacks.results import AttackResult, AttackStatus
from benchmarks.attacks.text import AttackedText
from benchmarks.attacks.victim import QueryResult
from benchmarks.slowdown import (
    attack_summary,
    efficacy,
    efficiency_gain,
    exit_metrics,
    gain_erased,
    latency_stats,
    measure_latency,
    render_markdown,
    sample_indices,
    wallclock_gain_erased,
)


def test_exit_metrics_by_hand():
    m = exit_metrics([2, 2, 3, 5], num_layers=6)
    assert m["mean_exit_layer"] == 3.0
    assert m["layer_speedup"] == 2.0
    assert m["efficiency_gain"] == pytest.approx(0.5)
    assert m["exit_histogram"] == [0, 2, 1, 0, 1, 0]
    # F = [0, .5, .75, .75, 1, 1] -> mean 4/6
    assert m["efficacy"] == pytest.approx(4 / 6)


def test_efficacy_extremes_and_errors():
    assert efficacy([1, 1, 1], 4) == 1.0
    assert efficacy([4, 4], 4) == 0.25
    assert efficacy([1, 3], 4) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="exit layers must be in 1..4"):
        efficacy([0, 5], 4)
    with pytest.raises(ValueError, match="empty"):
        efficacy([], 4)


def test_gain_erased_in_layers():
    clean = efficiency_gain(2.0, 6)
    assert clean == pytest.approx(2 / 3)
    assert gain_erased(clean, efficiency_gain(6.0, 6)) == pytest.approx(1.0)  # back to full depth
    assert gain_erased(clean, clean) == pytest.approx(0.0)
    assert gain_erased(clean, efficiency_gain(4.0, 6)) == pytest.approx(0.5)
    assert gain_erased(clean, efficiency_gain(1.0, 6)) < 0  # faster than clean: negative
    assert gain_erased(0.0, 0.0) is None


def test_wallclock_gain_erased():
    assert wallclock_gain_erased(5.0, 3.0, 7.0) == pytest.approx(0.5)
    assert wallclock_gain_erased(7.5, 3.0, 7.0) == pytest.approx(1.125)  # slower than full depth is possible
    assert wallclock_gain_erased(5.0, 7.0, 7.0) is None


def test_latency_stats():
    lat = np.array([[1.0, 3.0, 2.0], [10.0, 10.0, 40.0]])
    s = latency_stats(lat)
    assert s["latency_p50_ms"] == pytest.approx(6.5)  # median of 1 2 3 10 10 40
    assert s["latency_mean_ms"] == pytest.approx((2.0 + 10.0) / 2)  # mean of per-input medians
    assert s["latency_p99_ms"] == pytest.approx(np.percentile([1, 3, 2, 10, 10, 40], 99))
    assert s["latency_p90_ms"] <= s["latency_p99_ms"]


def _result(status: AttackStatus, queries: int, words_changed: int, seconds: float) -> AttackResult:
    text = AttackedText.from_input("one two three four five six seven eight nine ten")
    perturbed = text
    for i in range(words_changed):
        perturbed = perturbed.replace_word(i, f"w{i}")
    q = QueryResult(trace=np.zeros((2, 2), np.float32), exit_layer=1, output=np.zeros(2, np.float32))
    orig = GoalResult(text, q, GoalStatus.SEARCHING, 0.0, 0.0, 1)
    final = GoalResult(perturbed, q, GoalStatus.SEARCHING, 0.0, 0.0, queries)
    return AttackResult("x", 0, status, orig, final if status is not AttackStatus.SKIPPED else orig, 0, queries, seconds)


def test_attack_summary_excludes_skipped_from_rates():
    results = [
        _result(AttackStatus.SUCCEEDED, 10, 2, 1.0),
        _result(AttackStatus.FAILED, 30, 1, 2.0),
        _result(AttackStatus.SUCCEEDED, 20, 3, 3.0),
        _result(AttackStatus.SKIPPED, 1, 0, 6.0),
    ]
    s = attack_summary(results)
    assert (s["num_succeeded"], s["num_failed"], s["num_skipped"]) == (2, 1, 1)
    assert s["success_rate"] == pytest.approx(2 / 3)
    assert s["mean_queries"] == pytest.approx(20.0)
    assert s["mean_fraction_words_changed"] == pytest.approx(0.2)
    assert s["seconds_per_sample"] == pytest.approx(3.0)  # over all n
    assert attack_summary([_result(AttackStatus.SKIPPED, 1, 0, 1.0)])["success_rate"] is None


def test_skipped_result_must_keep_the_original():
    text = AttackedText.from_input("a b")
    q = QueryResult(trace=np.zeros((1, 2), np.float32), exit_layer=1, output=np.zeros(2, np.float32))
    orig = GoalResult(text, q, GoalStatus.SUCCEEDED, 1.0, 0.0, 1)
    moved = GoalResult(text.replace_word(0, "c"), q, GoalStatus.SUCCEEDED, 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="skipped"):
        AttackResult("x", 0, AttackStatus.SKIPPED, orig, moved, 0, 1, 0.0)


class _RecordingSession:
    def __init__(self, cost):
        self.calls = []
        self.now = 0.0
        self.cost = cost

    def predict(self, inputs, policy=None, batch_size=None):
        assert batch_size == 1 and len(inputs) == 1
        self.calls.append((policy, inputs[0]))
        self.now += self.cost[policy]
        return []

    def clock(self):
        return self.now


def test_measure_latency_interleaves_sets_request_by_request():
    session = _RecordingSession({"A": 0.002, "B": 0.005})
    sets = {"a": (["x1", "x2", "x3"], "A"), "b": (["y1", "y2", "y3"], "B")}
    lat = measure_latency(session, sets, passes=2, warmup=0, clock=session.clock)
    assert lat["a"].shape == (3, 2) and np.allclose(lat["a"], 2.0) and np.allclose(lat["b"], 5.0)
    inputs = [x for _, x in session.calls]
    # every input of one set is followed or preceded by the same input of the other set
    for k in range(0, len(inputs), 2):
        assert {inputs[k][1], inputs[k + 1][1]} == {inputs[k][1]}
    with pytest.raises(ValueError, match="same number of inputs"):
        measure_latency(session, {"a": (["x"], "A"), "b": (["y", "z"], "B")}, passes=1, warmup=0)


def test_sample_indices_seeded():
    a = sample_indices(100, 10, seed=1)
    assert a == sample_indices(100, 10, seed=1) and a == sorted(a) and len(set(a)) == 10
    assert a != sample_indices(100, 10, seed=2)
    assert sample_indices(5, 10, seed=0) == [0, 1, 2, 3, 4]


def test_markdown_table_lists_every_set():
    set_entry = dict(metric=0.9, metric_name="accuracy", mean_exit_layer=3.0, layer_speedup=2.0, gain_erased_layers=0.0,
                     efficacy=0.6, latency_p50_ms=3.0, latency_p90_ms=4.0, latency_p99_ms=5.0,
                     gain_erased_wallclock=0.0, throughput_b32_samples_per_s=100.0, success_rate=None,
                     seconds_per_sample=None, exit_histogram=[0, 0, 1])
    report = dict(task="sst2", split="dev", n=1, machine="m", date="d", platform="p", build="b", num_layers=3,
                  policy={"kind": "patience", "patience": 1}, runtime_threads=1, seed=0,
                  attack_seconds={"same": 1.0}, attack_wall_seconds=1.0, total_seconds=60.0, recipes={},
                  sets={"full_depth": set_entry, "clean": set_entry, "same": {**set_entry, "success_rate": 0.5}})
    md = render_markdown(report)
    assert "| full_depth |" in md and "| clean |" in md and "| same |" in md and "0.500" in md
