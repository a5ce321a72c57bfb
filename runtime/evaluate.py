"""Evaluate a session on labelled data: task metric, exit layers, layer speed-up,
and (optionally) how many predictions differ from another session (the reference)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from runtime.data import GlueTask, LabeledData
from runtime.policies import ExitPolicy
from runtime.session import Prediction, Session

__all__ = ["EvalReport", "count_mismatches", "evaluate"]

REGRESSION_TOLERANCE = 1e-4


@dataclass
class EvalReport:
    task: str
    policy: dict[str, Any]
    n: int
    batch_size: int
    num_layers: int
    metric_name: str
    metric: float
    metrics: dict[str, float]
    mean_exit_layer: float
    layer_speedup: float
    exit_histogram: list[int]  # count of samples exiting at layer 1..L
    seconds: float
    reference_mismatches: int | None = None
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prediction_values(task: GlueTask, predictions: list[Prediction]) -> np.ndarray:
    if task.kind == "classification":
        return np.asarray([p.label_index for p in predictions], dtype=np.int64)
    return np.asarray([p.value for p in predictions], dtype=np.float64)


def evaluate(
    session: Session, data: LabeledData, task: GlueTask, policy: ExitPolicy | None, batch_size: int
) -> tuple[EvalReport, list[Prediction]]:
    policy = session.check_policy(policy)
    start = time.perf_counter()
    predictions = session.predict(data.inputs, policy=policy, batch_size=batch_size)
    seconds = time.perf_counter() - start
    exits = np.asarray([p.exit_layer for p in predictions])
    metrics = task.metrics(_prediction_values(task, predictions), data.labels)
    mean_exit = float(exits.mean())
    report = EvalReport(
        task=task.name,
        policy=policy.to_dict(),
        n=len(predictions),
        batch_size=batch_size,
        num_layers=session.num_layers,
        metric_name=task.metric_name,
        metric=metrics[task.metric_name],
        metrics=metrics,
        mean_exit_layer=mean_exit,
        layer_speedup=session.num_layers / mean_exit,
        exit_histogram=np.bincount(exits, minlength=session.num_layers + 1)[1:].tolist(),
        seconds=seconds,
    )
    return report, predictions


def count_mismatches(
    got: list[Prediction], expected: list[Prediction], tolerance: float = REGRESSION_TOLERANCE
) -> tuple[int, list[dict[str, Any]]]:
    """Rows whose exit layer or prediction (label; regression value beyond ``tolerance``) differ."""
    if len(got) != len(expected):
        raise ValueError(f"cannot compare {len(got)} predictions with {len(expected)}")
    bad = []
    for i, (a, b) in enumerate(zip(got, expected)):
        same_exit = a.exit_layer == b.exit_layer
        if a.value is not None or b.value is not None:
            same_pred = a.value is not None and b.value is not None and abs(a.value - b.value) <= tolerance
        else:
            same_pred = a.label_index == b.label_index
        if not (same_exit and same_pred):
            bad.append(
                {
                    "index": i,
                    "exit_layer": [a.exit_layer, b.exit_layer],
                    "prediction": [a.label if a.value is None else a.value, b.label if b.value is None else b.value],
                }
            )
    return len(bad), bad[:10]
