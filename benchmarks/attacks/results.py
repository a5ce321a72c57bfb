"""Typed attack results: one per attacked example, succeeded / failed / skipped (TextAttack's vocabulary).

* ``succeeded``: the search reached the goal;
* ``failed``: it did not; ``perturbed`` is still the best text it found (what an
  attacker would send), which may already slow the model down;
* ``skipped``: the original already met the goal (e.g. already misclassified, or
  already exiting at the last layer); ``perturbed`` is the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from benchmarks.attacks.goals import GoalResult

__all__ = ["AttackResult", "AttackStatus"]


class AttackStatus(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class AttackResult:
    recipe: str
    index: int  # position in the attacked data set
    status: AttackStatus
    original: GoalResult
    perturbed: GoalResult
    ground_truth: float
    num_queries: int
    seconds: float

    def __post_init__(self) -> None:
        if self.status is AttackStatus.SKIPPED and self.perturbed.text != self.original.text:
            raise ValueError("a skipped attack keeps the original text")

    @property
    def attacked(self) -> bool:
        """Succeeded or failed (not skipped)."""
        return self.status is not AttackStatus.SKIPPED

    @property
    def exit_before(self) -> int:
        return self.original.result.exit_layer

    @property
    def exit_after(self) -> int:
        return self.perturbed.result.exit_layer

    @property
    def words_changed(self) -> int:
        return self.perturbed.text.words_changed

    @property
    def fraction_changed(self) -> float:
        return self.perturbed.text.fraction_changed
