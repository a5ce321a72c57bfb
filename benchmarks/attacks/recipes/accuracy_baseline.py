"""Baseline: a conventional untargeted accuracy attack (no slowdown objective).

Goal ``1 - p_exit(y)`` (the probability of the gold label in the model's answer, i.e.
at the exit the policy takes; success when the answer is wrong), WordNet synonym
swaps, greedy search by leave-one-out word importance (TextAttack's
``GreedyWordSwapWIR``, as in PWWS/TextFooler-style attacks), stopwords kept, no
word changed twice, at most 10% of the words (min 4), 1000 queries.

It is here to reproduce SAME's first finding (Chen et al., ACL 2023, Sec. 3):
attacks that target accuracy barely reduce the efficiency of multi-exit models.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.attacks.attack import Attack
from benchmarks.attacks.constraints import MaxWordsPerturbed, NoRepeatModification, StopwordModification
from benchmarks.attacks.goals import UntargetedAccuracyGoal
from benchmarks.attacks.recipes import Resources
from benchmarks.attacks.recipes.base import Recipe
from benchmarks.attacks.search import GreedyWordImportance
from benchmarks.attacks.transformations import WordNetSwap
from benchmarks.attacks.victim import Victim

__all__ = ["AccuracyBaseline"]


class AccuracyBaseline(Recipe):
    name = "accuracy"
    paper = "baseline (untargeted accuracy attack; SAME, Chen et al. ACL 2023, Sec. 3 finding)"

    @dataclass(frozen=True)
    class Params:
        max_fraction: float = 0.1
        min_words: int = 4
        query_budget: int = 1000
        importance: str = "leave-one-out"
        min_error: float = 1.0  # regression only: |y_hat - y| that counts as a successful attack

    def __init__(self, victim: Victim, resources: Resources, params: "AccuracyBaseline.Params | None" = None,
                 seed: int = 0) -> None:
        self.params = params or self.Params()
        p = self.params
        self.attack = Attack(
            name=self.name,
            victim=victim,
            goal=UntargetedAccuracyGoal(victim.num_layers, victim.is_regression, min_error=p.min_error),
            transformation=WordNetSwap(resources.wordnet()),
            constraints=[StopwordModification(), NoRepeatModification(), MaxWordsPerturbed(p.max_fraction, p.min_words)],
            search=GreedyWordImportance(importance=p.importance),
            query_budget=p.query_budget,
            seed=seed,
        )
