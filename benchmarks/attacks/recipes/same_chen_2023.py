"""SAME: Chen, Chen, Li, Yang, Liu, Tan, Li. "Dynamic Transformers Provide a False Sense of
Efficiency", ACL 2023 (released code: github.com/MatthewCYM/SAME).

As the released code does it:

* loss ``L = lam * L_heur + (1 - lam) * L_unif``, ``lam = 0.8``, per-exit weights 0.1
  before the current exit layer and ``1.2 ** (i - e)`` from it on
  (``goals.same_loss``); candidates are ranked by the real exit layer (the goal
  score), ties by that loss;
* word level: HotFlip swaps over the victim's own vocabulary, top 100 first-order
  candidates (special tokens, '##' pieces and non-alphabetic tokens skipped);
* character level: neighbour swaps, insertions, deletions and homoglyphs on the
  words holding the 10 tokens with the highest gradient score;
* constraints: at most ``max(3, ceil(0.1 * n_words))`` words changed, no stopwords,
  no word changed twice;
* search: beam of width 5 over 10 rounds, best text seen kept, stop when the sample
  runs to the last layer.

Speed tuning (not in the released code; ``chunk_size=None`` turns it off): a
round's candidates are scored in chunks of 64 (two runtime batches of 32) and the
round stops at the first chunk holding a success, instead of scoring the whole
round before stopping.

The released code runs the word-level and the character-level attacks as two
separate recipes; here both feed one beam (the candidates of each text are the
union). Regression tasks use the regression analogue of the loss (keep consecutive
exits at least ``tau`` apart; ``goals`` module docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.attacks.attack import Attack
from benchmarks.attacks.constraints import MaxWordsPerturbed, NoRepeatModification, StopwordModification
from benchmarks.attacks.goals import SameSlowdownGoal
from benchmarks.attacks.recipes import Resources
from benchmarks.attacks.recipes.base import Recipe, regression_tau
from benchmarks.attacks.search import BeamSearch
from benchmarks.attacks.transformations import CharacterEdits, CompositeTransformation, HotFlipSwap
from benchmarks.attacks.victim import Victim

__all__ = ["SameChen2023"]


class SameChen2023(Recipe):
    name = "same"
    paper = "Chen et al., Dynamic Transformers Provide a False Sense of Efficiency, ACL 2023"

    @dataclass(frozen=True)
    class Params:
        lam: float = 0.8
        hotflip_top_n: int = 100
        char_top_k_tokens: int = 10
        char_max_candidates: int = 200
        beam_width: int = 5
        max_rounds: int = 10
        chunk_size: int | None = 64  # speed tuning (see search.BeamSearch); None scores whole rounds
        max_fraction: float = 0.1
        min_words: int = 3
        query_budget: int | None = None

    def __init__(self, victim: Victim, resources: Resources, params: "SameChen2023.Params | None" = None,
                 seed: int = 0) -> None:
        self.params = params or self.Params()
        p = self.params
        transformation = CompositeTransformation(
            [
                HotFlipSwap(victim, top_n=p.hotflip_top_n),
                CharacterEdits(p.char_top_k_tokens, p.char_max_candidates, special_ids=victim.special_token_ids()),
            ],
            interleave=True,  # word- and character-level candidates alternate in each text's list
        )
        self.attack = Attack(
            name=self.name,
            victim=victim,
            goal=SameSlowdownGoal(victim.num_layers, victim.is_regression, lam=p.lam, tau=regression_tau(victim)),
            transformation=transformation,
            constraints=[NoRepeatModification(), StopwordModification(), MaxWordsPerturbed(p.max_fraction, p.min_words)],
            search=BeamSearch(beam_width=p.beam_width, max_rounds=p.max_rounds, chunk_size=p.chunk_size),
            query_budget=p.query_budget,
            seed=seed,
        )
