"""Goal functions: when an attack has succeeded, and the score its search maximises.

Each goal scores a victim ``QueryResult`` (every exit's output + the exit layer the
policy takes) and, for white-box searches, provides a differentiable ``loss`` on the
PyTorch model's exit logits ``[layers, outputs]`` that the search *minimises*.

* ``UntargetedAccuracyGoal``: the model's answer (the output at the exit the policy
  takes) should become wrong; score ``1 - p_exit(y)`` (regression: ``|y_hat - y|``,
  success once it is at least ``min_error``).
* ``SameSlowdownGoal`` (Chen et al., ACL 2023): score = exit layer / L, success when
  the sample runs to the last layer; ties broken by the SAME loss (lower is better);
  the SAME loss ``lam * L_heur + (1 - lam) * L_unif`` with the per-exit weights of the
  released code.
* ``WaffleSlowdownGoal`` (Coalson et al., NeurIPS 2023): score
  ``S(x) = mean_i [1 - sum_c |p_ic - 1/C| / (C - 1)]`` over all exits, success when
  ``S(x) > alpha``.

Regression analogues (``--task stsb``), stated in the report: PABEE-regression exits
once consecutive exits agree within ``tau``, so slowing it down means keeping
consecutive outputs at least ``tau`` apart. SAME-regression uses targets that move
an exit ``tau`` away from the previous exit's output when the two agree (kept as is
otherwise) with squared error in place of cross-entropy, and a hinge
``max(0, tau - |y_i - y_{i-1}|)`` in place of the uniform loss; WAFFLE-regression
scores ``mean_{i>=2} min(1, |y_i - y_{i-1}| / (2 tau))`` (0.5 = consecutive exits
``tau`` apart on average).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from benchmarks.attacks.text import AttackedText
from benchmarks.attacks.victim import QueryResult
from runtime.policies import softmax

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "GoalFunction",
    "GoalResult",
    "GoalStatus",
    "SameSlowdownGoal",
    "UntargetedAccuracyGoal",
    "WaffleSlowdownGoal",
    "same_heuristic_loss",
    "same_loss",
    "same_regression_loss",
    "same_regression_targets",
    "same_targets",
    "same_uniform_loss",
    "same_weights",
    "waffle_regression_score",
    "waffle_score",
]


class GoalStatus(str, Enum):
    SUCCEEDED = "succeeded"
    SEARCHING = "searching"


@dataclass(frozen=True)
class GoalResult:
    """One queried text as the goal sees it."""

    text: AttackedText
    result: QueryResult
    status: GoalStatus
    score: float
    tiebreak: float
    num_queries: int  # the victim's query count for this example when the text was scored

    @property
    def succeeded(self) -> bool:
        return self.status is GoalStatus.SUCCEEDED

    @property
    def rank(self) -> tuple[float, float]:
        """What searches maximise: the score, then the tie-break."""
        return (self.score, self.tiebreak)


class GoalFunction(ABC):
    """Scores victim outputs for one attacked example (``ground_truth``: gold label or score)."""

    name: ClassVar[str]
    supports_regression: ClassVar[bool] = True
    white_box: ClassVar[bool] = True  # provides ``loss`` for gradients

    def __init__(self, num_layers: int, regression: bool) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        if regression and not self.supports_regression:
            raise ValueError(f"goal {self.name!r} does not support regression tasks")
        self.num_layers = num_layers
        self.regression = regression

    @abstractmethod
    def score(self, result: QueryResult, ground_truth: float) -> float: ...

    @abstractmethod
    def is_complete(self, result: QueryResult, ground_truth: float) -> bool: ...

    def tiebreak(self, result: QueryResult, ground_truth: float) -> float:
        return 0.0

    def loss(self, logits: "torch.Tensor", exit_layer: int, ground_truth: float) -> "torch.Tensor":
        """Differentiable objective on exit logits ``[layers, outputs]``; lower is better for the attacker."""
        raise NotImplementedError(f"goal {self.name!r} has no white-box loss")

    def evaluate(
        self, texts: list[AttackedText], results: list[QueryResult], ground_truth: float, num_queries: int
    ) -> list[GoalResult]:
        out = []
        for text, result in zip(texts, results):
            status = GoalStatus.SUCCEEDED if self.is_complete(result, ground_truth) else GoalStatus.SEARCHING
            out.append(
                GoalResult(
                    text, result, status, self.score(result, ground_truth), self.tiebreak(result, ground_truth),
                    num_queries,
                )
            )
        return out

    def params(self) -> dict[str, object]:
        return {"goal": self.name}


# --------------------------------------------------------------------------- accuracy
class UntargetedAccuracyGoal(GoalFunction):
    """Make the model's answer (at the exit the policy takes) wrong."""

    name = "untargeted-accuracy"

    def __init__(self, num_layers: int, regression: bool, min_error: float = 1.0) -> None:
        super().__init__(num_layers, regression)
        if not min_error > 0:
            raise ValueError(f"min_error must be > 0; got {min_error}")
        self.min_error = float(min_error)

    def score(self, result: QueryResult, ground_truth: float) -> float:
        if self.regression:
            return abs(result.value - float(ground_truth))
        return 1.0 - float(softmax(result.output[None])[0, int(ground_truth)])

    def is_complete(self, result: QueryResult, ground_truth: float) -> bool:
        if self.regression:
            return abs(result.value - float(ground_truth)) >= self.min_error
        return result.label != int(ground_truth)

    def loss(self, logits, exit_layer, ground_truth):
        import torch

        out = logits[exit_layer - 1]
        if self.regression:
            return -torch.abs(out[0] - float(ground_truth))
        return torch.softmax(out, dim=-1)[int(ground_truth)]

    def params(self) -> dict[str, object]:
        extra = {"min_error": self.min_error} if self.regression else {}
        return {"goal": self.name, "score": "1 - p_exit(y)" if not self.regression else "|y_hat - y|", **extra}


# --------------------------------------------------------------------------- SAME
def same_weights(num_layers: int, exit_layer: int) -> np.ndarray:
    """SAME's per-exit weights: 0.1 before the current exit layer ``e``, ``1.2 ** (i - e)`` from it on (1-based i)."""
    if not 1 <= exit_layer <= num_layers:
        raise ValueError(f"exit_layer must be in 1..{num_layers}; got {exit_layer}")
    layers = np.arange(1, num_layers + 1)
    return np.where(layers < exit_layer, 0.1, 1.2 ** (layers - exit_layer)).astype(np.float64)


def same_targets(logits: "torch.Tensor") -> "torch.Tensor":
    """SAME's heuristic targets: ``t_1 = argmax z_1``; for i >= 2 the second-best class of ``z_i``
    when ``argmax z_i == argmax z_{i-1}``, else ``argmax z_i``."""
    import torch

    order = torch.argsort(-logits.detach(), dim=-1, stable=True)
    top, second = order[:, 0], order[:, 1]
    targets = [int(top[0])]
    for i in range(1, logits.shape[0]):
        targets.append(int(second[i]) if int(top[i]) == int(top[i - 1]) else int(top[i]))
    return torch.tensor(targets, dtype=torch.long)


def _weights_tensor(num_layers: int, exit_layer: int, like: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.as_tensor(same_weights(num_layers, exit_layer), dtype=like.dtype)


def same_heuristic_loss(logits: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """``mean_i w_i * CE(z_i, t_i)``."""
    import torch

    ce = torch.nn.functional.cross_entropy(logits, same_targets(logits), reduction="none")
    return (ce * weights).mean()


def same_uniform_loss(logits: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """``mean_i w_i * mean_c(-log softmax(z_i)_c / C)`` (soft cross-entropy to the uniform distribution)."""
    import torch

    classes = logits.shape[-1]
    per_exit = (-torch.log_softmax(logits, dim=-1) / classes).mean(dim=-1)
    return (per_exit * weights).mean()


def same_loss(logits: "torch.Tensor", exit_layer: int, lam: float = 0.8) -> "torch.Tensor":
    """SAME: ``lam * L_heur + (1 - lam) * L_unif`` on classification exit logits ``[layers, classes]``."""
    weights = _weights_tensor(logits.shape[0], exit_layer, logits)
    loss = 0.0
    if lam != 0:
        loss = loss + lam * same_heuristic_loss(logits, weights)
    if lam != 1:
        loss = loss + (1 - lam) * same_uniform_loss(logits, weights)
    return loss


def same_regression_targets(values: "torch.Tensor", tau: float) -> "torch.Tensor":
    """Regression analogue of SAME's targets on exit values ``[layers]``: ``t_1 = y_1``; for i >= 2, when
    ``|y_i - y_{i-1}| < tau`` (the exits agree) ``t_i = y_{i-1} +/- tau`` (away from ``y_{i-1}``, upwards on a
    tie), else ``t_i = y_i``."""
    import torch

    y = values.detach()
    targets = [float(y[0])]
    for i in range(1, y.shape[0]):
        gap = float(y[i] - y[i - 1])
        if abs(gap) < tau:
            targets.append(float(y[i - 1]) + (tau if gap >= 0 else -tau))
        else:
            targets.append(float(y[i]))
    return torch.tensor(targets, dtype=values.dtype)


def same_regression_loss(values: "torch.Tensor", exit_layer: int, lam: float, tau: float) -> "torch.Tensor":
    """``lam * mean_i w_i (y_i - t_i)^2 + (1 - lam) * mean_{i>=2} w_i max(0, tau - |y_i - y_{i-1}|)``."""
    import torch

    weights = _weights_tensor(values.shape[0], exit_layer, values)
    heur = (weights * (values - same_regression_targets(values, tau)) ** 2).mean()
    gaps = torch.abs(values[1:] - values[:-1])
    hinge = (weights[1:] * torch.clamp(tau - gaps, min=0.0)).mean() if values.shape[0] > 1 else values.sum() * 0
    return lam * heur + (1 - lam) * hinge


class SameSlowdownGoal(GoalFunction):
    """Reach the last layer; score = exit layer / L (the released code's), ties broken by the SAME loss."""

    name = "same-slowdown"

    def __init__(self, num_layers: int, regression: bool, lam: float = 0.8, tau: float | None = None) -> None:
        super().__init__(num_layers, regression)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lambda must be in [0, 1]; got {lam}")
        if regression and not (tau is not None and math.isfinite(tau) and tau > 0):
            raise ValueError(f"a regression SAME goal needs the policy's tau > 0; got {tau!r}")
        self.lam = float(lam)
        self.tau = tau

    def score(self, result: QueryResult, ground_truth: float) -> float:
        return result.exit_layer / self.num_layers

    def is_complete(self, result: QueryResult, ground_truth: float) -> bool:
        return result.exit_layer >= self.num_layers

    def loss(self, logits, exit_layer, ground_truth):
        if self.regression:
            return same_regression_loss(logits[:, 0], exit_layer, self.lam, float(self.tau))
        return same_loss(logits, exit_layer, self.lam)

    def tiebreak(self, result: QueryResult, ground_truth: float) -> float:
        import torch

        with torch.no_grad():
            return -float(self.loss(torch.from_numpy(np.asarray(result.trace, dtype=np.float32)), result.exit_layer,
                                    ground_truth))

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {
            "goal": self.name,
            "score": "exit_layer / L (ties: lower SAME loss)",
            "success": "exit at the last layer",
            "lambda": self.lam,
            "weights": "0.1 before the current exit layer e, 1.2^(i-e) from it on",
        }
        if self.regression:
            out.update({"tau": self.tau, "loss": "regression analogue: keep consecutive exits >= tau apart"})
        return out


# --------------------------------------------------------------------------- WAFFLE
def waffle_score(probabilities) -> "torch.Tensor | float":
    """``mean_i [1 - sum_c |p_ic - 1/C| / (C - 1)]`` over exits; ``probabilities`` ``[layers, classes]``.

    Differentiable when given a torch tensor (returns a 0-d tensor); a float for numpy input.
    """
    import torch

    as_numpy = not isinstance(probabilities, torch.Tensor)
    p = torch.as_tensor(np.asarray(probabilities, dtype=np.float64)) if as_numpy else probabilities
    classes = p.shape[-1]
    if classes < 2:
        raise ValueError(f"the WAFFLE score needs >= 2 classes; got {classes}")
    score = (1.0 - torch.abs(p - 1.0 / classes).sum(dim=-1) / (classes - 1)).mean()
    return float(score) if as_numpy else score


def waffle_regression_score(values, tau: float) -> "torch.Tensor | float":
    """``mean_{i>=2} min(1, |y_i - y_{i-1}| / (2 tau))`` over exit values ``[layers]``."""
    import torch

    as_numpy = not isinstance(values, torch.Tensor)
    y = torch.as_tensor(np.asarray(values, dtype=np.float64)) if as_numpy else values
    if y.shape[0] < 2:
        return 0.0 if as_numpy else y.sum() * 0
    score = torch.clamp(torch.abs(y[1:] - y[:-1]) / (2 * tau), max=1.0).mean()
    return float(score) if as_numpy else score


class WaffleSlowdownGoal(GoalFunction):
    """Make every exit uncertain: success when ``S(x) > alpha``."""

    name = "waffle-slowdown"

    def __init__(self, num_layers: int, regression: bool, alpha: float = 0.5, tau: float | None = None) -> None:
        super().__init__(num_layers, regression)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1); got {alpha}")
        if regression and not (tau is not None and math.isfinite(tau) and tau > 0):
            raise ValueError(f"a regression WAFFLE goal needs the policy's tau > 0; got {tau!r}")
        self.alpha = float(alpha)
        self.tau = tau

    def score(self, result: QueryResult, ground_truth: float) -> float:
        if self.regression:
            return float(waffle_regression_score(result.trace[:, 0], float(self.tau)))
        return float(waffle_score(result.probabilities()))

    def is_complete(self, result: QueryResult, ground_truth: float) -> bool:
        return self.score(result, ground_truth) > self.alpha

    def tiebreak(self, result: QueryResult, ground_truth: float) -> float:
        return float(result.exit_layer)

    def loss(self, logits, exit_layer, ground_truth):
        import torch

        if self.regression:
            return -waffle_regression_score(logits[:, 0], float(self.tau))
        return -waffle_score(torch.softmax(logits, dim=-1))

    def params(self) -> dict[str, object]:
        out: dict[str, object] = {
            "goal": self.name,
            "score": "S(x) = mean_i [1 - sum_c |p_ic - 1/C| / (C-1)] over all exits",
            "alpha": self.alpha,
        }
        if self.regression:
            out.update({"tau": self.tau, "score": "regression analogue: mean_i min(1, |y_i - y_(i-1)| / (2 tau))"})
        return out
