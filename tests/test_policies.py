"""Exit policies on hand-made logits."""

import numpy as np
import pytest

from runtime.policies import (
    NO_LABEL,
    EntropyPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    PolicyError,
    RegressionPatiencePolicy,
    argmax_labels,
    entropy,
    policy_from_dict,
    replay,
)


def trace(*layers):
    """layers of [batch, classes] -> [layers, batch, classes]"""
    return np.asarray(layers, dtype=np.float32)


def test_argmax_ties_break_to_lowest_index_like_numpy():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 3.0, 3.0]], dtype=np.float32)
    assert argmax_labels(logits).tolist() == [0, 1, 0]
    assert argmax_labels(logits).tolist() == np.argmax(logits, axis=1).tolist()


def test_nan_row_gets_no_label():
    logits = np.array([[np.nan, 1.0], [0.0, 1.0]], dtype=np.float32)
    assert argmax_labels(logits).tolist() == [NO_LABEL, 1]


def test_patience_counts_consecutive_agreements_per_sample():
    # sample 0: labels 1,1,1,0 -> with patience 2 exits at layer 3
    # sample 1: labels 0,1,0,1 -> never settles, exits at the last layer
    # sample 2: labels 0,0,1,1 -> patience 2 needs 2 agreements: never (1 then reset then 1)
    t = trace(
        [[0, 1], [1, 0], [1, 0]],
        [[0, 1], [0, 1], [1, 0]],
        [[0, 1], [1, 0], [0, 1]],
        [[1, 0], [0, 1], [0, 1]],
    )
    r = replay(PatiencePolicy(2), t)
    assert r.exit_layer.tolist() == [3, 4, 4]
    np.testing.assert_array_equal(r.outputs[0], t[2, 0])
    r1 = replay(PatiencePolicy(1), t)
    assert r1.exit_layer.tolist() == [2, 4, 2]


def test_patience_ties_use_lowest_index():
    # [1,1] -> label 0 ; [2,1] -> label 0: they agree on a tie
    t = trace([[1.0, 1.0]], [[2.0, 1.0]], [[0.0, 5.0]])
    assert replay(PatiencePolicy(1), t).exit_layer.tolist() == [2]


def test_nan_never_settles_and_breaks_agreement():
    t = trace([[0.0, 1.0]], [[np.nan, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]])
    # layer2 NaN resets; layer3 cannot agree with NaN's label; agreement at 4, 5
    assert replay(PatiencePolicy(1), t).exit_layer.tolist() == [4]
    assert replay(PatiencePolicy(2), t).exit_layer.tolist() == [5]
    nan_everywhere = trace([[np.nan, np.nan]], [[np.nan, np.nan]])
    assert replay(PatiencePolicy(1), nan_everywhere).exit_layer.tolist() == [2]


def test_last_layer_always_fires():
    t = trace([[0, 1]], [[1, 0]])
    assert replay(PatiencePolicy(5), t).exit_layer.tolist() == [2]
    assert replay(FullDepthPolicy(), t).exit_layer.tolist() == [2]
    # full depth fits regression outputs too
    assert replay(FullDepthPolicy(), trace([[1.0]], [[1.0]], [[1.0]])).exit_layer.tolist() == [3]


def test_regression_patience_uses_strict_threshold():
    t = trace([[1.0], [1.0]], [[1.05], [1.5]], [[1.06], [1.55]], [[3.0], [2.0]])
    r = replay(RegressionPatiencePolicy(1, 0.1), t)
    assert r.exit_layer.tolist() == [2, 3]
    assert np.isclose(r.outputs[0, 0], 1.05)
    r2 = replay(RegressionPatiencePolicy(2, 0.1), t)
    assert r2.exit_layer.tolist() == [3, 4]
    # |2.0 - 1.0| == tau exactly: "less than" does not hold
    exact = trace([[1.0]], [[2.0]], [[9.0]])
    assert replay(RegressionPatiencePolicy(1, 1.0), exact).exit_layer.tolist() == [3]


def test_regression_nan_never_agrees():
    t = trace([[1.0]], [[np.nan]], [[np.nan]], [[1.0]])
    assert replay(RegressionPatiencePolicy(1, 10.0), t).exit_layer.tolist() == [4]


def test_entropy_policy():
    confident = [10.0, 0.0]
    unsure = [0.1, 0.0]
    t = trace([unsure, confident], [confident, unsure], [unsure, unsure])
    assert replay(EntropyPolicy(0.1), t).exit_layer.tolist() == [2, 1]
    assert entropy(np.array([[0.0, 0.0]]))[0] == pytest.approx(np.log(2))


def test_max_prob_policy_threshold_inclusive():
    # softmax([0, 0]) = 0.5 exactly -> fires at threshold 0.5
    t = trace([[0.0, 0.0], [0.0, 0.1]], [[0.0, 0.0], [0.0, 0.1]])
    assert replay(MaxProbPolicy(0.5), t).exit_layer.tolist() == [1, 1]
    assert replay(MaxProbPolicy(0.6), t).exit_layer.tolist() == [2, 2]


def test_per_sample_counters_not_batch_wide():
    # PABEE's reference keeps one counter for the batch; ours must not: sample 0 settles alone.
    t = trace([[0, 1], [0, 1]], [[0, 1], [1, 0]], [[0, 1], [0, 1]])
    assert replay(PatiencePolicy(1), t).exit_layer.tolist() == [2, 3]


@pytest.mark.parametrize(
    "bad",
    [lambda: PatiencePolicy(0), lambda: PatiencePolicy(1.5), lambda: RegressionPatiencePolicy(1, 0.0),
     lambda: EntropyPolicy(-1), lambda: MaxProbPolicy(1.5), lambda: policy_from_dict({"kind": "nope"}),
     lambda: policy_from_dict({"kind": "patience", "patience": 2, "extra": 1})],
)
def test_bad_policy_parameters_are_clear_errors(bad):
    with pytest.raises(PolicyError):
        bad()


def test_policy_dict_round_trip():
    for p in (PatiencePolicy(3), RegressionPatiencePolicy(2, 0.2), EntropyPolicy(0.3), MaxProbPolicy(0.9), FullDepthPolicy()):
        assert policy_from_dict(p.to_dict()) == p


def test_wrong_output_shapes_rejected():
    with pytest.raises(PolicyError, match="regression"):
        replay(RegressionPatiencePolicy(1, 0.1), np.zeros((2, 3, 2), np.float32))
    with pytest.raises(PolicyError, match="classes"):
        replay(PatiencePolicy(1), np.zeros((2, 3, 1), np.float32))
