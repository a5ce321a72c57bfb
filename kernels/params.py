"""Map runtime.policies objects to the scalar arguments of the step kernels, and back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernels.spec import STEP_KERNELS
from runtime.policies import (
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    PolicyError,
    RegressionPatiencePolicy,
    policy_from_dict,
)


@dataclass(frozen=True)
class KernelParams:
    """The policy scalars every step kernel takes (a kind ignores the ones it does not use).

    ``tau`` travels as a C ``double`` (regression compares in float64, as NumPy does);
    ``threshold`` as a C ``float`` (entropy/max-prob are computed in fp32).
    """

    kind: str
    patience: int = 0
    tau: float = 0.0
    threshold: float = 0.0


def kernel_params(policy: ExitPolicy) -> KernelParams:
    """The step-kernel arguments that implement ``policy``."""
    if isinstance(policy, FullDepthPolicy):
        return KernelParams("full")
    if isinstance(policy, PatiencePolicy):
        return KernelParams("patience", patience=policy.patience)
    if isinstance(policy, RegressionPatiencePolicy):
        return KernelParams("regression-patience", patience=policy.patience, tau=float(policy.tau))
    if isinstance(policy, EntropyPolicy):
        return KernelParams("entropy", threshold=float(policy.threshold))
    if isinstance(policy, MaxProbPolicy):
        return KernelParams("max-prob", threshold=float(policy.threshold))
    raise PolicyError(f"expected a policy of kind {sorted(STEP_KERNELS)}, found {type(policy).__name__}")


def policy_for(params: KernelParams) -> ExitPolicy:
    """The runtime.policies object whose semantics the step kernel for ``params`` implements.

    Building it also validates the scalars (PolicyError on e.g. patience < 1).
    """
    if params.kind not in STEP_KERNELS:
        raise PolicyError(f"expected a policy kind in {sorted(STEP_KERNELS)}, found {params.kind!r}")
    spec: dict[str, Any] = {"kind": params.kind}
    if params.kind in ("patience", "regression-patience"):
        spec["patience"] = params.patience
    if params.kind == "regression-patience":
        spec["tau"] = params.tau
    if params.kind in ("entropy", "max-prob"):
        spec["threshold"] = params.threshold
    return policy_from_dict(spec)


def check_num_classes(kind: str, num_classes: int) -> None:
    """The output widths runtime.policies accepts: 1 for regression, >= 2 otherwise."""
    if kind == "regression-patience":
        if num_classes != 1:
            raise PolicyError(f"regression policies expect one output per row; got {num_classes}")
    elif num_classes < 2:
        raise PolicyError(f"classification policies expect >= 2 classes; got {num_classes}")
