"""What every recipe is: a named, cited composition of attack parts with printed parameters."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from benchmarks.attacks.attack import Attack, AttackError
from benchmarks.attacks.results import AttackResult
from benchmarks.attacks.victim import Victim
from runtime.policies import RegressionPatiencePolicy
from runtime.tokenization import TextInput

__all__ = ["Recipe", "regression_tau"]


def regression_tau(victim: Victim) -> float | None:
    """The victim policy's agreement threshold (regression); None for classification."""
    if not victim.is_regression:
        return None
    policy = victim.policy
    if not isinstance(policy, RegressionPatiencePolicy):
        raise AttackError(
            f"slowdown goals on a regression task need a regression-patience policy (its tau); got {policy.kind!r}"
        )
    return float(policy.tau)


class Recipe:
    name: ClassVar[str]
    paper: ClassVar[str]
    attack: Attack
    params: Any

    def run(self, index: int, item: TextInput, ground_truth: float) -> AttackResult:
        return self.attack.attack(index, item, ground_truth)

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.name, "paper": self.paper, "params": asdict(self.params), "parts": self.attack.params()}
