"""The ONNX Runtime chain: exact early-exit semantics vs the PyTorch reference, batching, inputs, threads."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from exporter.reference import reference_session
from runtime import EntropyPolicy, MaxProbPolicy, PatiencePolicy, RegressionPatiencePolicy, load
from runtime.policies import FullDepthPolicy, PolicyError, replay
from runtime.tokenization import InputError

TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the film is strictly routine .",
    "a gorgeous , witty , seductive movie .",
    "nothing works",
    "An astonishing achievement that deserves every award it gets, and more besides.",
    "meh",
    "the plot is thin but the performances are strong and the music soars",
    "I laughed , I cried , I left early .",
    "a masterpiece of tedium",
    "surprisingly good",
    "the worst film of the year , by a wide margin , and it is not close",
] * 3


@pytest.fixture(scope="module")
def session(bert_build):
    return load(bert_build)


@pytest.fixture(scope="module")
def reference(bert_checkpoint, session):
    return reference_session(bert_checkpoint[1], session.encoder.max_length)


def _key(preds):
    return [(p.label_index, p.exit_layer) for p in preds]


@pytest.mark.parametrize("policy", [PatiencePolicy(1), PatiencePolicy(2), EntropyPolicy(0.4), MaxProbPolicy(0.8),
                                    FullDepthPolicy()])
@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_matches_pytorch_reference(session, reference, policy, batch_size):
    got = session.predict(TEXTS, policy=policy, batch_size=batch_size)
    want = reference.predict(TEXTS, policy=policy, batch_size=batch_size)
    assert _key(got) == _key(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_exit_layers_are_not_all_the_same(session):
    exits = {p.exit_layer for p in session.predict(TEXTS, policy=PatiencePolicy(1))}
    assert len(exits) > 1, "the tiny model should exercise both early and late exits"


@pytest.mark.parametrize("policy", [PatiencePolicy(1), PatiencePolicy(2), EntropyPolicy(0.4)])
def test_compaction_equals_trace_replay_and_keeps_input_order(session, policy):
    batch = session.encoder.encode(TEXTS)
    early = session.run_encoded(batch, policy)
    traced = session.run_encoded(batch, policy, trace=True)
    assert traced.trace.shape == (session.num_layers, len(TEXTS), 2)
    again = replay(policy, traced.trace)
    np.testing.assert_array_equal(early.exit_layer, again.exit_layer)
    np.testing.assert_allclose(early.outputs, again.outputs, atol=1e-5)
    # results per row do not depend on what else is in the batch
    singles = [session.run_encoded(session.encoder.encode([t]), policy) for t in TEXTS]
    assert early.exit_layer.tolist() == [int(s.exit_layer[0]) for s in singles]


def test_batch_size_does_not_change_results(session):
    base = session.predict(TEXTS, batch_size=1)
    for size in (2, 7, 64):
        assert _key(session.predict(TEXTS, batch_size=size)) == _key(base)


def test_trace_mode_returns_every_layer(session):
    preds = session.predict(TEXTS[:3], trace=True)
    for p in preds:
        assert len(p.layer_outputs) == session.num_layers
        assert np.argmax(p.layer_outputs[p.exit_layer - 1]) == p.label_index


def test_prediction_fields(session):
    p = session.predict(["a fine film"])[0]
    assert p.label in ("negative", "positive") and p.label_index in (0, 1)
    assert sum(p.scores) == pytest.approx(1.0)
    assert 1 <= p.exit_layer <= session.num_layers
    assert p.truncated is False and p.value is None
    assert "layer_outputs" not in p.to_dict()


def test_long_text_is_truncated_and_flagged(session):
    long_text = " ".join(["wonderful"] * 500)
    short, long_ = session.predict(["wonderful", long_text])
    assert long_.truncated is True and short.truncated is False
    batch = session.encoder.encode([long_text])
    assert batch.input_ids.shape[1] == session.encoder.max_length


@pytest.mark.parametrize("bad,match", [
    ([""], "empty text"),
    (["ok", "   "], "input 1: empty text"),
    ([None], "expected a text"),
    ([("a", "")], "empty text"),
    ([123], "expected a text"),
    ([], "no inputs"),
    ("a single string", "single str"),
])
def test_bad_inputs_are_clear_errors(session, bad, match):
    with pytest.raises(InputError, match=match):
        session.predict(bad)


def test_wrong_policy_kind_for_task(session):
    with pytest.raises(PolicyError, match="classification"):
        session.predict(["x"], policy=RegressionPatiencePolicy(1, 0.1))


def test_thread_safety_8_threads(session):
    policy = PatiencePolicy(1)
    sequential = [_key(session.predict(TEXTS[i:i + 7], policy=policy, batch_size=3)) for i in range(0, 28, 2)]

    def work(i):
        return _key(session.predict(TEXTS[i:i + 7], policy=policy, batch_size=3))

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            concurrent = list(pool.map(work, range(0, 28, 2)))
            assert concurrent == sequential


def test_regression_build_matches_reference(stsb_build, stsb_checkpoint):
    session = load(stsb_build)
    reference = reference_session(stsb_checkpoint[1], session.encoder.max_length)
    pairs = [(a, b) for a, b in zip(TEXTS[:12], TEXTS[5:17])]
    for tau in (0.05, 0.5, 2.0):
        policy = RegressionPatiencePolicy(1, tau)
        got = session.predict(pairs, policy=policy, batch_size=4)
        want = reference.predict(pairs, policy=policy, batch_size=4)
        assert [p.exit_layer for p in got] == [p.exit_layer for p in want]
        np.testing.assert_allclose([p.value for p in got], [p.value for p in want], atol=1e-5)
        assert all(p.scores == [p.value] and p.label is None for p in got)
    with pytest.raises(PolicyError, match="regression"):
        session.predict(pairs, policy=PatiencePolicy(1))
    assert {p.exit_layer for p in session.predict(pairs, policy=FullDepthPolicy())} == {session.num_layers}
