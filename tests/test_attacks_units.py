"""Unit tests of the attack parts on hand-made inputs: goals and losses, constraints, text, transformations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks.attacks.constraints import (
    Constraint,
    MaxWordsPerturbed,
    NoRepeatModification,
    SentenceSimilarity,
    StopwordModification,
    allowed_indices,
    check_all,
)
from benchmarks.attacks.goals import (
    GoalStatus,
    SameSlowdownGoal,
    UntargetedAccuracyGoal,
    WaffleSlowdownGoal,
    same_heuristic_loss,
    same_loss,
    same_regression_loss,
    same_regression_targets,
    same_targets,
    same_uniform_loss,
    same_weights,
    waffle_regression_score,
    waffle_score,
)
from benchmarks.attacks.search import rank_results
from benchmarks.attacks.text import AttackedText, split_words
from benchmarks.attacks.transformations import (
    HOMOGLYPHS,
    CharacterEdits,
    EmbeddingNeighbourSwap,
    HotFlipSwap,
    candidate_vocabulary,
    character_mutations,
)
from benchmarks.attacks.victim import QueryResult, WordGradients


def qr(trace, exit_layer: int) -> QueryResult:
    trace = np.asarray(trace, dtype=np.float32)
    return QueryResult(trace=trace, exit_layer=exit_layer, output=trace[exit_layer - 1])


# --------------------------------------------------------------------------- SAME
def test_same_weights_follow_the_released_code():
    np.testing.assert_allclose(same_weights(6, 3), [0.1, 0.1, 1.0, 1.2, 1.44, 1.728])
    np.testing.assert_allclose(same_weights(4, 1), [1.0, 1.2, 1.44, 1.728])
    np.testing.assert_allclose(same_weights(4, 4), [0.1, 0.1, 0.1, 1.0])
    with pytest.raises(ValueError, match="exit_layer must be in 1..4"):
        same_weights(4, 5)


def test_same_targets_second_best_when_consecutive_exits_agree():
    logits = torch.tensor([[2.0, 1.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [5.0, 1.0]])
    # t1 = argmax; layer 2 agrees with layer 1 (class 0) -> second best 1; layer 3 changed (1) -> 1;
    # layer 4 agrees with layer 3 (1) -> 0; layer 5 argmax 0 differs from layer 4's argmax 1 -> 0
    assert same_targets(logits).tolist() == [0, 1, 1, 0, 0]
    three = torch.tensor([[0.1, 0.5, 0.2], [0.0, 3.0, 2.0], [4.0, 0.0, 1.0]])
    assert same_targets(three).tolist() == [1, 2, 0]  # layer 2 agrees (1) -> second best is 2


def test_same_losses_match_hand_computation():
    logits = torch.tensor([[2.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([0.1, 1.0, 1.2], dtype=logits.dtype)  # exit layer 2
    logp = torch.log_softmax(logits, dim=-1)
    targets = [0, 1, 1]
    heur = np.mean([w[i].item() * -logp[i, t].item() for i, t in enumerate(targets)])
    unif = np.mean([w[i].item() * np.mean([-logp[i, c].item() / 2 for c in range(2)]) for i in range(3)])
    assert same_heuristic_loss(logits, w).item() == pytest.approx(heur, rel=1e-6)
    assert same_uniform_loss(logits, w).item() == pytest.approx(unif, rel=1e-6)
    assert same_loss(logits, 2, lam=0.8).item() == pytest.approx(0.8 * heur + 0.2 * unif, rel=1e-6)
    assert same_loss(logits, 2, lam=1.0).item() == pytest.approx(heur, rel=1e-6)
    assert same_loss(logits, 2, lam=0.0).item() == pytest.approx(unif, rel=1e-6)


def test_same_loss_gradient_pushes_agreeing_exits_apart():
    logits = torch.tensor([[3.0, 0.0], [3.0, 0.0], [3.0, 0.0]], requires_grad=True)
    same_loss(logits, 2, lam=0.8).backward()
    # every exit after the first agrees with the one before: descending the loss raises class 1 there
    assert (logits.grad[1:, 1] < 0).all() and (logits.grad[1:, 0] > 0).all()


def test_same_regression_targets_and_loss():
    values = torch.tensor([1.0, 1.05, 2.0, 1.9])
    assert same_regression_targets(values, 0.2).tolist() == pytest.approx([1.0, 1.2, 2.0, 1.8])
    loss = same_regression_loss(values, exit_layer=2, lam=0.5, tau=0.2)
    w = same_weights(4, 2)
    heur = np.mean(w * (np.array([1.0, 1.05, 2.0, 1.9]) - np.array([1.0, 1.2, 2.0, 1.8])) ** 2)
    hinge = np.mean(w[1:] * np.maximum(0.0, 0.2 - np.array([0.05, 0.95, 0.1])))
    assert loss.item() == pytest.approx(0.5 * heur + 0.5 * hinge, rel=1e-5)


def test_same_goal_scores_exit_layer_and_breaks_ties_by_loss():
    goal = SameSlowdownGoal(num_layers=4, regression=False)
    early = qr([[3, 0], [3, 0], [3, 0], [3, 0]], 2)
    late = qr([[3, 0], [0, 3], [3, 0], [0, 3]], 4)
    assert goal.score(early, 0) == 0.5 and goal.score(late, 0) == 1.0
    assert not goal.is_complete(early, 0) and goal.is_complete(late, 0)
    closer = qr([[3, 0], [1, 0.9], [3, 0], [3, 0]], 2)
    assert goal.tiebreak(closer, 0) > goal.tiebreak(early, 0)  # lower SAME loss ranks first at equal exit
    expected = -same_loss(torch.tensor(early.trace), 2, 0.8).item()
    assert goal.tiebreak(early, 0) == pytest.approx(expected)
    ranked = rank_results(goal.evaluate([None, None, None], [early, closer, late], 0, 3))
    assert [r.result for r in ranked] == [late, closer, early]
    assert ranked[0].status is GoalStatus.SUCCEEDED
    with pytest.raises(ValueError, match="tau"):
        SameSlowdownGoal(4, regression=True)


# --------------------------------------------------------------------------- WAFFLE
def test_waffle_score_formula():
    assert waffle_score(np.array([[0.5, 0.5]])) == pytest.approx(1.0)
    assert waffle_score(np.array([[1.0, 0.0]])) == pytest.approx(0.0)
    assert waffle_score(np.array([[0.75, 0.25]])) == pytest.approx(0.5)
    assert waffle_score(np.array([[0.75, 0.25], [0.5, 0.5]])) == pytest.approx(0.75)  # mean over exits
    # C = 3, one-hot: 1 - (2/3 + 1/3 + 1/3) / 2 = 1/3 (the formula as specified, not renormalised)
    assert waffle_score(np.array([[1.0, 0.0, 0.0]])) == pytest.approx(1 / 3)
    p = torch.tensor([[0.7, 0.3], [0.2, 0.8]], requires_grad=True)
    s = waffle_score(p)
    assert s.item() == pytest.approx(waffle_score(p.detach().numpy()))
    s.backward()
    assert p.grad is not None


def test_waffle_goal_succeeds_strictly_above_alpha():
    goal = WaffleSlowdownGoal(num_layers=2, regression=False, alpha=0.5)
    logit = math.log(3.0)  # softmax([log 3, 0]) = [0.75, 0.25] -> S = 0.5 at every exit
    at_alpha = qr([[logit, 0.0], [logit, 0.0]], 2)
    assert goal.score(at_alpha, 0) == pytest.approx(0.5)
    exact = WaffleSlowdownGoal(num_layers=2, regression=False, alpha=goal.score(at_alpha, 0))
    assert not exact.is_complete(at_alpha, 0)  # S == alpha is not a success
    below = qr([[2.0, 0.0], [2.0, 0.0]], 2)
    assert goal.score(below, 0) < 0.5 and not goal.is_complete(below, 0)
    above = qr([[0.1, 0.0], [0.0, 0.1]], 2)
    assert goal.is_complete(above, 0)
    loss = goal.loss(torch.tensor(above.trace), 2, 0)
    assert loss.item() == pytest.approx(-goal.score(above, 0), rel=1e-5)


def test_waffle_regression_score():
    assert waffle_regression_score(np.array([1.0, 1.0, 1.0]), 0.2) == 0.0
    assert waffle_regression_score(np.array([1.0, 1.2, 1.0]), 0.2) == pytest.approx(0.5)
    assert waffle_regression_score(np.array([1.0, 3.0]), 0.2) == pytest.approx(1.0)  # capped at 1


# --------------------------------------------------------------------------- accuracy
def test_untargeted_accuracy_goal():
    goal = UntargetedAccuracyGoal(num_layers=3, regression=False)
    right = qr([[0, 0], [2, 0], [0, 0]], 2)  # exit 2 says class 0
    wrong = qr([[0, 0], [0, 2], [9, 0]], 2)  # exit 2 says class 1 (the last layer would be right)
    p0 = 1 / (1 + math.exp(-2))
    assert goal.score(right, 0) == pytest.approx(1 - p0)
    assert not goal.is_complete(right, 0)
    assert goal.is_complete(wrong, 0)  # judged at the exit the policy takes, not the last layer
    reg = UntargetedAccuracyGoal(num_layers=2, regression=True, min_error=1.0)
    value = qr([[2.0], [3.5]], 2)
    assert reg.score(value, 2.0) == pytest.approx(1.5) and reg.is_complete(value, 2.0)
    assert not reg.is_complete(value, 3.0)


# --------------------------------------------------------------------------- text
def test_attacked_text_round_trip_and_swaps():
    text = "it 's a charming , often affecting journey . "
    words, gaps = split_words(text)
    assert words == ("it", "s", "a", "charming", "often", "affecting", "journey")
    t = AttackedText.from_input(text)
    assert t.text == text and t.input == text
    swapped = t.replace_word(3, "ch\u0430rming")  # a homoglyph keeps the word count
    assert swapped.text == "it 's a ch\u0430rming , often affecting journey . "
    assert swapped.words_changed == 1 and swapped.modified == {3}
    assert swapped.fraction_changed == pytest.approx(1 / 7)
    spans = swapped.word_char_spans()
    assert [swapped.text[a:b] for a, b in spans] == list(swapped.words)
    with pytest.raises(ValueError, match="without spaces"):
        t.replace_word(0, "two words")
    pair = AttackedText.from_input(("a man plays", "a man is playing"))
    assert pair.column == 1 and pair.replace_word(3, "singing").input == ("a man plays", "a man is singing")


# --------------------------------------------------------------------------- constraints
def test_stopword_and_repeat_constraints():
    t = AttackedText.from_input("the movie is not a great film")
    assert StopwordModification().allowed_indices(t, set(range(7))) == {1, 5, 6}
    t2 = t.replace_word(1, "picture")
    assert NoRepeatModification().allowed_indices(t2, set(range(7))) == {0, 2, 3, 4, 5, 6}


def test_max_words_perturbed_limit_and_checks():
    c = MaxWordsPerturbed(max_fraction=0.1, min_words=3)
    assert [c.limit(n) for n in (5, 19, 30, 31, 45)] == [3, 3, 3, 4, 5]
    t = AttackedText.from_input("one two three four five six seven")
    three = t.replace_word(0, "a").replace_word(1, "b").replace_word(2, "c")
    assert c.allowed_indices(three, set(range(7))) == {0, 1, 2}  # at the cap: no new word may change
    four = three.replace_word(3, "d")
    assert c.check_many([three, four], t) == [True, False]
    assert check_all([c], [three, four], t, expensive=False) == [three]
    # no new word may change (cap), and the changed ones may not change twice: nothing is left
    assert allowed_indices([StopwordModification(), NoRepeatModification(), c], three) == set()
    assert allowed_indices([NoRepeatModification()], three) == {3, 4, 5, 6}


class _FakeEncoder:
    """Unit vectors by hand: similarity is the dot product."""

    def __init__(self, vectors):
        self.vectors = vectors
        self.cleared = 0

    def similarity(self, a, others):
        return np.asarray([float(np.dot(self.vectors[a], self.vectors[o])) for o in others])

    def clear_cache(self):
        self.cleared += 1


def test_sentence_similarity_threshold_and_lazy_flag():
    orig = AttackedText.from_input("good film")
    near, far = orig.replace_word(1, "movie"), orig.replace_word(1, "tax")
    enc = _FakeEncoder({"good film": np.array([1.0, 0.0]), "good movie": np.array([0.95, 0.312]),
                        "good tax": np.array([0.5, 0.866])})
    c = SentenceSimilarity(enc, 0.9)
    assert c.expensive
    assert c.check_many([near, far], orig) == [True, False]
    assert check_all([c], [near, far], orig, expensive=False) == [near, far]  # cheap pass skips it
    assert check_all([c], [near, far], orig, expensive=True) == [near]
    c.reset()
    assert enc.cleared == 1
    assert Constraint().check_many([near], orig) == [True]


# --------------------------------------------------------------------------- transformations
def test_character_mutations():
    rng = np.random.default_rng(0)
    muts = character_mutations("ab", rng, letters="z")
    assert "ba" in muts  # neighbour swap
    assert "zab" in muts and "azb" in muts  # insertions
    assert "b" in muts and "a" in muts  # deletions
    assert HOMOGLYPHS["a"] + "b" in muts and "a" + HOMOGLYPHS["b"] in muts
    assert "ab" not in muts and len(muts) == len(set(muts))


class _FakeVictim:
    def __init__(self, vocab, table):
        self._vocab = vocab
        self._table = np.asarray(table, dtype=np.float32)

    def vocabulary(self):
        return list(self._vocab)

    def special_token_ids(self):
        return {0}

    def embedding_matrix(self):
        return self._table

    def token_ids(self, word):
        return [self._vocab.index(word)] if word in self._vocab else [0, 0]


VOCAB = ["[PAD]", "good", "bad", "##ly", "fine", "12", "great", "awful"]
TABLE = [[0, 0], [1, 0], [-1, 0], [5, 5], [0.9, 0.1], [3, 3], [1, 0.2], [-1, -0.1]]


def test_candidate_vocabulary_skips_specials_pieces_and_non_alphabetic():
    assert candidate_vocabulary(VOCAB, {0}).tolist() == [False, True, True, False, True, False, True, True]


def test_hotflip_first_order_scores_and_order():
    victim = _FakeVictim(VOCAB, TABLE)
    flip = HotFlipSwap(victim, top_n=3)
    text = AttackedText.from_input("good day")
    grads = WordGradients(token_ids=np.array([0, 1, 6, 0]), grads=np.array([[0, 0], [1.0, 0.5], [0, 0], [0, 0]],
                          dtype=np.float32), word_tokens=((1,), (2,)), loss=0.0)
    est = flip.scores(grads, [1])[0]
    table = np.asarray(TABLE)
    expected = (table - table[1]) @ np.array([1.0, 0.5])
    for v in (2, 4, 6, 7):
        assert est[v] == pytest.approx(expected[v])
    assert np.isinf(est[[0, 1, 3, 5]]).all()  # special, the word itself, '##', non-alphabetic
    out = flip(text, {0}, grads, np.random.default_rng(0))
    # most negative first: bad (-2), awful (-2.05) -> awful, bad, then fine (-0.05)
    assert [c.words[0] for c in out] == ["awful", "bad", "fine"]


def test_character_edits_rank_tokens_by_gradient_sum():
    grads = WordGradients(token_ids=np.array([0, 10, 11, 12, 0]),
                          grads=np.array([[9, 9], [1, 1], [-5, 0], [3, 0], [9, 9]], dtype=np.float32),
                          word_tokens=((1,), (2,), (3,)), loss=0.0)
    edits = CharacterEdits(top_k_tokens=3, max_candidates=5, special_ids={0})
    assert edits.top_tokens(grads) == {0, 12, 10}  # the special token takes a slot, as in the released code
    text = AttackedText.from_input("abc def ghi")
    out = edits(text, {0, 1, 2}, grads, np.random.default_rng(1))
    assert len(out) == 5 and all(c.changed_indices()[0] in (0, 2) for c in out)


def test_embedding_neighbours_by_cosine():
    swap = EmbeddingNeighbourSwap(_FakeVictim(VOCAB, TABLE), k=2)
    assert swap.replacements("good") == ("fine", "great")
    assert swap.replacements("unknownword") == ()
