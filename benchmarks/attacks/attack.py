"""``Attack``: goal function + transformation + constraints + search, run on one victim.

The constructor checks that the parts fit (gradients available where a part needs
them, the goal supports the task kind); ``attack`` runs one example and returns a
typed ``AttackResult``. Per-example state (query budget, caches, the seeded random
generator) lives in an ``AttackContext`` that the search receives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from benchmarks.attacks.constraints import Constraint, allowed_indices, check_all
from benchmarks.attacks.goals import GoalFunction, GoalResult
from benchmarks.attacks.results import AttackResult, AttackStatus
from benchmarks.attacks.search import SearchMethod
from benchmarks.attacks.text import AttackedText
from benchmarks.attacks.transformations import Transformation
from benchmarks.attacks.victim import Victim, WordGradients
from runtime.tokenization import TextInput

__all__ = ["Attack", "AttackContext", "AttackError"]


class AttackError(ValueError):
    """The parts of an attack do not fit together or the victim."""


@dataclass
class AttackContext:
    """What a search may do for one example: expand, score, take gradients, accept."""

    victim: Victim
    goal: GoalFunction
    transformation: Transformation
    constraints: Sequence[Constraint]
    original: AttackedText
    ground_truth: float
    rng: np.random.Generator
    gradient_calls: int = field(default=0)

    @property
    def exhausted(self) -> bool:
        return self.victim.exhausted

    def allowed_indices(self, text: AttackedText) -> set[int]:
        return allowed_indices(self.constraints, text)

    def gradients(self, text: AttackedText) -> WordGradients:
        self.gradient_calls += 1
        return self.victim.gradients(text, lambda logits, exit_layer: self.goal.loss(logits, exit_layer, self.ground_truth))

    def candidates(
        self, text: AttackedText, only: set[int] | None = None, grads: WordGradients | None = None
    ) -> list[AttackedText]:
        """Transformations of ``text`` at the allowed indices (``only``: a subset) passing the cheap constraints."""
        indices = self.allowed_indices(text)
        if only is not None:
            indices &= only
        if not indices:
            return []
        if grads is None and self.transformation.needs_gradients:
            grads = self.gradients(text)
        produced = self.transformation(text, indices, grads, self.rng)
        unique = list({c.input: c for c in produced if c.input != text.input}.values())
        return check_all(self.constraints, unique, self.original, expensive=False)

    def get_results(self, texts: Sequence[AttackedText]) -> list[GoalResult]:
        """Query the victim (cut short when the budget runs out) and score with the goal."""
        results = self.victim.query(list(texts))
        return self.goal.evaluate(list(texts[: len(results)]), results, self.ground_truth, self.victim.num_queries)

    def accept(self, ranked: Sequence[GoalResult], k: int) -> list[GoalResult]:
        """The first ``k`` of ``ranked`` that pass the expensive constraints (checked lazily, best first)."""
        if not any(c.expensive for c in self.constraints):
            return list(ranked[:k])
        accepted: list[GoalResult] = []
        for start in range(0, len(ranked), max(k, 8)):
            chunk = list(ranked[start : start + max(k, 8)])
            ok = {c.input for c in check_all(self.constraints, [r.text for r in chunk], self.original, expensive=True)}
            accepted.extend(r for r in chunk if r.text.input in ok)
            if len(accepted) >= k:
                break
        return accepted[:k]


class Attack:
    """A composed attack; ``attack(index, input, ground_truth)`` runs one example."""

    def __init__(
        self,
        name: str,
        victim: Victim,
        goal: GoalFunction,
        transformation: Transformation,
        constraints: Sequence[Constraint],
        search: SearchMethod,
        query_budget: int | None,
        seed: int = 0,
        column: int | None = None,
    ) -> None:
        needs_gradients = transformation.needs_gradients or search.needs_gradients
        if needs_gradients and not goal.white_box:
            raise AttackError(f"{name}: the transformation/search need gradients but goal {goal.name!r} has no loss")
        if goal.regression != victim.is_regression:
            expected = "regression" if victim.is_regression else "classification"
            found = "regression" if goal.regression else "classification"
            raise AttackError(f"{name}: the victim is a {expected} model; the goal was built for {found}")
        if goal.num_layers != victim.num_layers:
            raise AttackError(f"{name}: the goal expects {goal.num_layers} layers; the victim has {victim.num_layers}")
        if query_budget is not None and query_budget < 1:
            raise AttackError(f"{name}: query_budget must be >= 1 or None; got {query_budget}")
        self.name = name
        self.victim = victim
        self.goal = goal
        self.transformation = transformation
        self.constraints = tuple(constraints)
        self.search = search
        self.query_budget = query_budget
        self.seed = int(seed)
        self.column = column

    def attack(self, index: int, item: TextInput, ground_truth: float) -> AttackResult:
        start = time.perf_counter()
        self.victim.begin(self.query_budget)
        for constraint in self.constraints:
            constraint.reset()
        original = AttackedText.from_input(item, self.column)
        ctx = AttackContext(
            victim=self.victim,
            goal=self.goal,
            transformation=self.transformation,
            constraints=self.constraints,
            original=original,
            ground_truth=float(ground_truth),
            rng=np.random.default_rng([self.seed, int(index)]),
        )
        (initial,) = ctx.get_results([original])
        if initial.succeeded:
            final, status = initial, AttackStatus.SKIPPED
        else:
            final = self.search.perform(ctx, initial)
            status = AttackStatus.SUCCEEDED if final.succeeded else AttackStatus.FAILED
        return AttackResult(
            recipe=self.name,
            index=int(index),
            status=status,
            original=initial,
            perturbed=final,
            ground_truth=float(ground_truth),
            num_queries=self.victim.num_queries,
            seconds=time.perf_counter() - start,
        )

    def params(self) -> dict[str, object]:
        return {
            "goal": self.goal.params(),
            "transformation": self.transformation.params(),
            "constraints": [c.params() for c in self.constraints],
            "search": self.search.params(),
            "query_budget": self.query_budget,
            "seed": self.seed,
            "perturbed_column": "last (text_b of a pair)" if self.column is None else self.column,
        }
