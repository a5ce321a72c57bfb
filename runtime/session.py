"""The runtime session: ``runtime.load(BUILD_DIR)`` -> ``Session.predict(texts)``.

``Session`` owns no mutable state after construction: every ``predict`` call
keeps its policy state locally, the engines (ONNX Runtime sessions) and the
tokenizer are safe for concurrent use, so one loaded session can be shared by
many threads.

The same ``Session`` class wraps the eager PyTorch reference
(``exporter.reference``), which is how tests and ``evaluate
--compare-reference`` get predictions that are comparable row for row.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.chain import ChainResult, OrtChainExecutor, StepExecutor, run_chain
from runtime.engines import OrtOptions
from runtime.manifest import ManifestError, load_manifest
from runtime.policies import ExitPolicy, PolicyError, policy_from_dict, softmax
from runtime.tokenization import EncodedBatch, TextEncoder, TextInput, validate_inputs

__all__ = ["Prediction", "Session", "TaskInfo", "load"]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str  # "classification" | "regression"
    labels: tuple[str, ...]

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"


@dataclass(frozen=True)
class Prediction:
    """One input's result. Classification: ``label``/``label_index`` and class
    probabilities in ``scores``; regression: ``value`` (and ``scores == [value]``)."""

    exit_layer: int  # 1-based
    scores: list[float]
    label: str | None = None
    label_index: int | None = None
    value: float | None = None
    truncated: bool = False
    layer_outputs: list[list[float]] | None = None  # trace mode: raw exit outputs of every layer

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Session:
    """Early-exit predictions from a chain executor. Construct with ``load``."""

    def __init__(
        self,
        executor: StepExecutor,
        encoder: TextEncoder,
        task: TaskInfo,
        default_policy: ExitPolicy,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.executor = executor
        self.encoder = encoder
        self.task = task
        self.default_policy = default_policy
        self.batch_size = batch_size

    @property
    def num_layers(self) -> int:
        return self.executor.num_layers

    def check_policy(self, policy: ExitPolicy | None) -> ExitPolicy:
        policy = policy if policy is not None else self.default_policy
        if not isinstance(policy, ExitPolicy):
            raise PolicyError(f"policy must be an ExitPolicy; got {type(policy).__name__}")
        if policy.regression is not None and policy.regression != self.task.is_regression:
            expected = "a regression policy (regression-patience)" if self.task.is_regression else "a classification policy"
            raise PolicyError(f"task {self.task.name!r} is {self.task.kind}: expected {expected}; got {policy.kind!r}")
        return policy

    def run_encoded(self, batch: EncodedBatch, policy: ExitPolicy | None = None, trace: bool = False) -> ChainResult:
        """Run one already-tokenized batch through the chain."""
        return run_chain(self.executor, batch, self.check_policy(policy), trace=trace)

    def predict(
        self,
        inputs: Sequence[TextInput],
        policy: ExitPolicy | None = None,
        batch_size: int | None = None,
        trace: bool = False,
    ) -> list[Prediction]:
        """Predict texts or ``(text_a, text_b)`` pairs; results in input order."""
        texts = validate_inputs(inputs)
        policy = self.check_policy(policy)
        size = batch_size or self.batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1; got {size}")
        results: list[Prediction] = []
        for start in range(0, len(texts), size):
            batch = self.encoder.encode(texts[start : start + size])
            chain = run_chain(self.executor, batch, policy, trace=trace)
            results.extend(self._predictions(batch, chain))
        return results

    def _predictions(self, batch: EncodedBatch, chain: ChainResult) -> list[Prediction]:
        out = []
        probs = None if self.task.is_regression else softmax(chain.outputs)
        for row in range(len(batch)):
            trace = chain.trace[:, row].tolist() if chain.trace is not None else None
            common = dict(exit_layer=int(chain.exit_layer[row]), truncated=bool(batch.truncated[row]), layer_outputs=trace)
            if self.task.is_regression:
                value = float(chain.outputs[row, 0])
                out.append(Prediction(scores=[value], value=value, **common))
            else:
                index = int(np.argmax(chain.outputs[row]))
                out.append(
                    Prediction(scores=probs[row].tolist(), label=self.task.labels[index], label_index=index, **common)
                )
        return out


def load(
    build_dir: str | os.PathLike,
    options: OrtOptions | None = None,
    batch_size: int = 32,
    verify: bool = True,
) -> Session:
    """Open a build: verify the manifest (schema, checksums), load the engines, return a ``Session``."""
    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir, verify=verify)
    if manifest.backend != "onnxruntime":
        raise ManifestError(
            f"build {build_dir} was built for backend {manifest.backend!r}; runtime.load runs 'onnxruntime' builds"
        )
    tok = manifest.tokenizer
    encoder = TextEncoder((build_dir / tok["file"]).read_text(encoding="utf-8"), manifest.max_seq_len, tok["pad_id"])
    executor = OrtChainExecutor.load(build_dir, manifest, options or OrtOptions())
    task = TaskInfo(manifest.task["name"], manifest.task["kind"], tuple(manifest.labels))
    return Session(executor, encoder, task, policy_from_dict(manifest.default_policy), batch_size=batch_size)
