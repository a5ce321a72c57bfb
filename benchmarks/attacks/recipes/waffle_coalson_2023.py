"""WAFFLE: Coalson, Ritter, Bobba, Hong. "BERT Lost Patience Won't Be Robust to Adversarial
Slowdown", NeurIPS 2023.

* goal: ``S(x) = mean_i [1 - sum_c |p_ic - 1/C| / (C - 1)]`` over all exits, success
  when ``S(x) > alpha`` (default 0.5; ``goals.waffle_score``);
* search: greedy, words ranked once by the L1 norm of the gradient of ``-S`` with
  respect to their word embeddings;
* transformation: WordNet synonyms and the victim's nearest word-embedding
  neighbours;
* constraints: at most 10% of the words (min 4), no word changed twice, sentence
  similarity >= 0.9 (cosine of all-MiniLM-L6-v2 sentence embeddings, offline);
* query budget 1000.

Regression tasks use the regression analogue of ``S`` (``goals`` module docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.attacks.attack import Attack
from benchmarks.attacks.constraints import MaxWordsPerturbed, NoRepeatModification, SentenceSimilarity
from benchmarks.attacks.goals import WaffleSlowdownGoal
from benchmarks.attacks.recipes import Resources
from benchmarks.attacks.recipes.base import Recipe, regression_tau
from benchmarks.attacks.search import GreedyWordImportance
from benchmarks.attacks.transformations import CompositeTransformation, EmbeddingNeighbourSwap, WordNetSwap
from benchmarks.attacks.victim import Victim

__all__ = ["WaffleCoalson2023"]


class WaffleCoalson2023(Recipe):
    name = "waffle"
    paper = "Coalson et al., BERT Lost Patience Won't Be Robust to Adversarial Slowdown, NeurIPS 2023"

    @dataclass(frozen=True)
    class Params:
        alpha: float = 0.5
        embedding_neighbours: int = 15
        max_fraction: float = 0.1
        min_words: int = 4
        min_similarity: float = 0.9
        query_budget: int = 1000

    def __init__(self, victim: Victim, resources: Resources, params: "WaffleCoalson2023.Params | None" = None,
                 seed: int = 0) -> None:
        self.params = params or self.Params()
        p = self.params
        self.attack = Attack(
            name=self.name,
            victim=victim,
            goal=WaffleSlowdownGoal(victim.num_layers, victim.is_regression, alpha=p.alpha, tau=regression_tau(victim)),
            transformation=CompositeTransformation(
                [WordNetSwap(resources.wordnet()), EmbeddingNeighbourSwap(victim, k=p.embedding_neighbours)]
            ),
            constraints=[
                NoRepeatModification(),
                MaxWordsPerturbed(p.max_fraction, p.min_words),
                SentenceSimilarity(resources.sentence_encoder(), p.min_similarity),
            ],
            search=GreedyWordImportance(importance="gradient"),
            query_budget=p.query_budget,
            seed=seed,
        )
