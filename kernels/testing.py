"""Random exit traces for the kernel tests (shared by the reference and the GPU tests).

The traces are built to hit every rule's edge: argmax ties, labels that persist for a
few layers (so patience fires at various depths), NaN entries and whole NaN rows, +inf
and all -inf rows (softmax undefined), regression steps exactly equal to tau.
"""

from __future__ import annotations

import numpy as np

from runtime.policies import entropy, softmax

REGRESSION_TAU = 0.25  # the lattice below makes |y_i - y_{i-1}| == tau happen often


def make_trace(rng: np.random.Generator, layers: int, batch: int, classes: int, *,
               nan_rate: float = 0.03, inf_rate: float = 0.01) -> np.ndarray:
    """Exit outputs ``[layers, batch, classes]`` float32 (``classes == 1``: regression)."""
    if classes == 1:
        steps = rng.choice(np.array([0.0, 0.125, -0.125, 0.25, -0.25, 0.5, 2.0, -3.0]),
                           size=(layers, batch, 1), p=[0.3, 0.15, 0.15, 0.1, 0.1, 0.1, 0.05, 0.05])
        trace = (np.cumsum(steps, axis=0) + rng.integers(-8, 8, size=(1, batch, 1))).astype(np.float32)
        trace[rng.random(trace.shape) < nan_rate] = np.nan
        trace[rng.random(trace.shape) < inf_rate / 2] = np.inf
        return trace

    # Half the samples: small-integer logits (many exact ties); half: continuous with a
    # per-sample temperature (a spread of entropies). Each layer perturbs a sample with
    # probability 0.4, otherwise repeats its logits, so predictions persist for a while.
    quantized = rng.integers(-3, 4, size=(1, batch, classes)).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(0.05), np.log(20.0), size=(1, batch, 1)))
    continuous = (rng.standard_normal((1, batch, classes)) * scale).astype(np.float32)
    base = np.where(rng.random((1, batch, 1)) < 0.5, quantized, continuous)
    changed = rng.random((layers, batch, 1)) < 0.4
    noise = np.where(rng.random((layers, batch, classes)) < 0.5,
                     rng.integers(-1, 2, size=(layers, batch, classes)),
                     rng.standard_normal((layers, batch, classes)) * 0.5)
    trace = (base + changed * noise).astype(np.float32)

    # Rates are per row: about nan_rate of the rows get one NaN entry, as many are all NaN.
    cells = rng.random(trace.shape)
    trace[cells < nan_rate / classes] = np.nan
    trace[(cells >= nan_rate / classes) & (cells < (nan_rate + inf_rate) / classes)] = np.inf
    trace[cells > 1 - 4 * inf_rate / classes] = -np.inf
    rows = rng.random((layers, batch))
    trace[rows < nan_rate] = np.nan  # whole NaN rows
    trace[rows > 1 - inf_rate] = -np.inf  # all -inf rows (softmax undefined)
    return trace


def entropy_scores(trace: np.ndarray) -> np.ndarray:
    """Float64 entropy of every (layer, sample), NaN where undefined."""
    layers, batch, classes = trace.shape
    with np.errstate(invalid="ignore", over="ignore"):
        return entropy(trace.reshape(-1, classes)).reshape(layers, batch)


def max_prob_scores(trace: np.ndarray) -> np.ndarray:
    """Float64 top softmax probability of every (layer, sample), NaN where undefined."""
    layers, batch, classes = trace.shape
    with np.errstate(invalid="ignore", over="ignore"):
        return np.max(softmax(trace.reshape(-1, classes)), axis=1).reshape(layers, batch)


def pick_threshold(scores: np.ndarray, quantile: float, *, margin: float = 0.0,
                   low: float = 0.0, high: float = np.inf) -> float:
    """A threshold near ``quantile`` of the finite scores, in ``(low, high]``.

    With ``margin == 0`` the threshold is one of the scores itself (exercises the
    strict/non-strict comparison). With ``margin > 0`` it is the midpoint of a gap of at
    least ``2 * margin`` between neighbouring scores, so an fp32 evaluation that is off
    by less than ``margin`` decides exactly like float64.
    """
    values = scores[np.isfinite(scores)]
    values = values[(values > low) & (values <= high)]
    if values.size == 0:
        return float(min(high, max(low, 0.0) + 0.5))
    finite = np.unique(values)
    k = int(np.clip(np.searchsorted(finite, np.quantile(values, quantile)), 0, finite.size - 1))
    if margin == 0.0:
        return float(finite[k])
    mids = (finite[:-1] + finite[1:]) / 2
    ok = np.flatnonzero(np.diff(finite) >= 2 * margin)
    if ok.size:
        return float(mids[ok[np.argmin(np.abs(ok - k))]])  # the wide-enough gap nearest the quantile
    if finite[-1] + 2 * margin <= high:
        return float(finite[-1] + 2 * margin)
    if finite[0] - low >= 4 * margin:
        return float(finite[0] - 2 * margin)
    raise ValueError(f"expected a gap of {2 * margin} between scores, found none among {finite.size}")
