"""Exit policies: the rule that decides, after each layer, which samples stop.

One specification, several implementations: these NumPy classes are the
reference semantics. The ONNX Runtime chain, the PyTorch reference and the CUDA
kernels in ``kernels/`` all follow exactly what is written here.

Semantics shared by every policy
--------------------------------
* ``step`` is called once per layer, in order, with that layer's exit outputs
  for the rows that are still running. It updates the per-row state in place and
  returns a boolean mask of rows whose exit fires at this layer.
* The last layer always fires (a sample cannot run past the model).
* Classification labels are ``numpy.argmax``: ties break to the lowest index.
* A row whose outputs contain NaN is never settled at that layer: its patience
  counter resets, entropy/max-prob rules do not fire, and its label is recorded
  as ``-1`` so that the next layer cannot "agree" with it.
* Counters are per sample. (The PABEE reference code keeps one counter for the
  whole batch; we do not.)

Patience follows PABEE (Zhou et al., 2020): with patience ``t`` a sample exits at
layer ``i`` once the prediction at layers ``i-t .. i`` has stayed the same, i.e.
``t`` consecutive agreements; the earliest possible exit is layer ``t + 1``.
For regression two outputs "agree" when ``|y_i - y_{i-1}| < tau``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

NO_LABEL = -1


@dataclass
class ExitState:
    """Per-row state carried between layers; every array has one entry per running row."""

    prev_label: np.ndarray  # int64, NO_LABEL when there is none (first layer, NaN)
    prev_value: np.ndarray  # float64, NaN when there is none
    counter: np.ndarray  # int64, consecutive agreements so far

    @classmethod
    def fresh(cls, batch_size: int) -> "ExitState":
        return cls(
            prev_label=np.full(batch_size, NO_LABEL, dtype=np.int64),
            prev_value=np.full(batch_size, np.nan, dtype=np.float64),
            counter=np.zeros(batch_size, dtype=np.int64),
        )

    def take(self, rows: np.ndarray) -> "ExitState":
        """The state of ``rows`` only (used when exited rows leave the batch)."""
        return ExitState(self.prev_label[rows], self.prev_value[rows], self.counter[rows])

    def __len__(self) -> int:
        return len(self.counter)


class PolicyError(ValueError):
    """A policy was configured or used with outputs it does not accept."""


def argmax_labels(outputs: np.ndarray) -> np.ndarray:
    """Argmax per row, lowest index on ties; rows containing NaN get ``NO_LABEL``."""
    labels = np.argmax(outputs, axis=1).astype(np.int64)
    labels[np.isnan(outputs).any(axis=1)] = NO_LABEL
    return labels


def softmax(outputs: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (NaN rows stay NaN)."""
    z = outputs.astype(np.float64)
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=1, keepdims=True)


def entropy(outputs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the softmax of each row."""
    p = softmax(outputs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    h = -np.sum(terms, axis=1)
    h[np.isnan(outputs).any(axis=1)] = np.nan
    return h


def _check_outputs(outputs: np.ndarray, state: ExitState, regression: bool | None) -> None:
    """``regression``: True/False for task-specific policies, None for policies that fit any task."""
    if outputs.ndim != 2:
        raise PolicyError(f"exit outputs must be 2-D [batch, classes]; got shape {outputs.shape}")
    if outputs.shape[0] != len(state):
        raise PolicyError(f"exit outputs have {outputs.shape[0]} rows but the state has {len(state)}")
    if regression is None:
        return
    if regression and outputs.shape[1] != 1:
        raise PolicyError(f"regression policies expect one output per row; got {outputs.shape[1]}")
    if not regression and outputs.shape[1] < 2:
        raise PolicyError(f"classification policies expect >= 2 classes; got {outputs.shape[1]}")


class ExitPolicy(ABC):
    """A rule that decides per row whether to stop after the current layer."""

    kind: ClassVar[str]
    regression: ClassVar[bool | None] = False  # None: fits classification and regression alike

    def new_state(self, batch_size: int) -> ExitState:
        return ExitState.fresh(batch_size)

    def step(self, state: ExitState, outputs: np.ndarray, layer: int, num_layers: int) -> np.ndarray:
        """Update ``state`` with ``outputs`` of 1-based ``layer``; return the rows that exit."""
        _check_outputs(outputs, state, self.regression)
        if not 1 <= layer <= num_layers:
            raise PolicyError(f"layer must be in 1..{num_layers}; got {layer}")
        fired = self._fires(state, outputs)
        if layer == num_layers:
            fired = np.ones(len(state), dtype=bool)
        return fired

    @abstractmethod
    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FullDepthPolicy(ExitPolicy):
    """Never exit early: every sample runs all layers (the baseline, for any task)."""

    kind: ClassVar[str] = "full"
    regression: ClassVar[bool | None] = None

    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray:
        return np.zeros(len(state), dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class PatiencePolicy(ExitPolicy):
    """PABEE for classification: exit once the argmax stayed the same ``patience`` times in a row."""

    patience: int
    kind: ClassVar[str] = "patience"

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise PolicyError(f"patience must be an integer >= 1; got {self.patience!r}")

    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray:
        labels = argmax_labels(outputs)
        agree = (labels == state.prev_label) & (labels != NO_LABEL)
        state.counter[:] = np.where(agree, state.counter + 1, 0)
        state.prev_label[:] = labels
        return state.counter >= self.patience

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "patience": self.patience}


@dataclass(frozen=True)
class RegressionPatiencePolicy(ExitPolicy):
    """PABEE for regression: exit once ``|y_i - y_{i-1}| < tau`` held ``patience`` times in a row."""

    patience: int
    tau: float
    kind: ClassVar[str] = "regression-patience"
    regression: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise PolicyError(f"patience must be an integer >= 1; got {self.patience!r}")
        if not (isinstance(self.tau, (int, float)) and math.isfinite(self.tau) and self.tau > 0):
            raise PolicyError(f"tau must be a finite number > 0; got {self.tau!r}")

    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray:
        values = outputs[:, 0].astype(np.float64)
        with np.errstate(invalid="ignore"):
            agree = np.abs(values - state.prev_value) < self.tau  # NaN compares False
        state.counter[:] = np.where(agree, state.counter + 1, 0)
        state.prev_value[:] = values
        return state.counter >= self.patience

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "patience": self.patience, "tau": self.tau}


@dataclass(frozen=True)
class EntropyPolicy(ExitPolicy):
    """DeeBERT (Xin et al., 2020): exit when the softmax entropy (nats) is below ``threshold``."""

    threshold: float
    kind: ClassVar[str] = "entropy"

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise PolicyError(f"entropy threshold must be a finite number > 0; got {self.threshold!r}")

    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return entropy(outputs) < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold}


@dataclass(frozen=True)
class MaxProbPolicy(ExitPolicy):
    """Shallow-Deep Networks (Kaya et al., 2019): exit when the top softmax probability >= ``threshold``."""

    threshold: float
    kind: ClassVar[str] = "max-prob"

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold <= 1):
            raise PolicyError(f"max-prob threshold must be in (0, 1]; got {self.threshold!r}")

    def _fires(self, state: ExitState, outputs: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.max(softmax(outputs), axis=1) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold}


POLICIES: dict[str, type[ExitPolicy]] = {
    cls.kind: cls
    for cls in (FullDepthPolicy, PatiencePolicy, RegressionPatiencePolicy, EntropyPolicy, MaxProbPolicy)
}


def policy_from_dict(spec: dict[str, Any]) -> ExitPolicy:
    """Rebuild a policy from ``to_dict`` output (as stored in model.pt and the manifest)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise PolicyError(f"a policy spec is a dict with a 'kind' key; got {spec!r}")
    kind = spec["kind"]
    if kind not in POLICIES:
        raise PolicyError(f"unknown policy kind {kind!r}; expected one of {sorted(POLICIES)}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return POLICIES[kind](**params)
    except TypeError as exc:
        raise PolicyError(f"bad parameters for policy {kind!r}: {params!r} ({exc})") from None


@dataclass
class ReplayResult:
    """What a policy decides given every layer's outputs for a batch."""

    exit_layer: np.ndarray  # int64 [batch], 1-based
    outputs: np.ndarray  # [batch, classes], the outputs at each row's exit layer


def replay(policy: ExitPolicy, layer_outputs: np.ndarray) -> ReplayResult:
    """Apply ``policy`` to precomputed outputs ``[layers, batch, classes]`` (trace mode).

    Equivalent to running the chain with early exit, without compaction; used by
    tests, by the attack harness and to sweep policies from one trace.
    """
    if layer_outputs.ndim != 3:
        raise PolicyError(f"layer outputs must be [layers, batch, classes]; got shape {layer_outputs.shape}")
    num_layers, batch = layer_outputs.shape[:2]
    state = policy.new_state(batch)
    exit_layer = np.zeros(batch, dtype=np.int64)
    active = np.arange(batch)
    for layer in range(1, num_layers + 1):
        fired = policy.step(state, layer_outputs[layer - 1, active], layer, num_layers)
        exit_layer[active[fired]] = layer
        active, state = active[~fired], state.take(~fired)
        if len(active) == 0:
            break
    outputs = layer_outputs[exit_layer - 1, np.arange(batch)]
    return ReplayResult(exit_layer=exit_layer, outputs=outputs)


__all__ = [
    "NO_LABEL",
    "POLICIES",
    "EntropyPolicy",
    "ExitPolicy",
    "ExitState",
    "FullDepthPolicy",
    "MaxProbPolicy",
    "PatiencePolicy",
    "PolicyError",
    "RegressionPatiencePolicy",
    "ReplayResult",
    "argmax_labels",
    "entropy",
    "policy_from_dict",
    "replay",
    "softmax",
]
