"""GLUE loaders (SST-2, STS-B) and the task metrics.

A data dir follows the GLUE layout: ``DIR/SST-2/{train,dev}.tsv`` and
``DIR/STS-B/{train,dev}.tsv``. Both GLUE's original headers (SST-2:
``sentence, label``) and the simplified ones (SST-2: ``text, label``) are read.
STS-B files keep GLUE's columns (``sentence1, sentence2, score``).

When no data dir exists, ``load_glue`` can fall back to Hugging Face ``datasets``
(``fetch=True``): real code for users on a fresh machine with network access; it
cannot run on machines without hub access.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from runtime.tokenization import TextInput

__all__ = [
    "DataError",
    "GlueTask",
    "LabeledData",
    "TASKS",
    "accuracy",
    "get_task",
    "load_glue",
    "pearson",
    "spearman",
]


class DataError(ValueError):
    """A data file is missing or does not have the expected columns."""


@dataclass(frozen=True)
class LabeledData:
    """Inputs (texts or text pairs) with their gold labels (class index or score)."""

    inputs: list[TextInput]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, n: int | None) -> "LabeledData":
        return self if n is None or n >= len(self) else LabeledData(self.inputs[:n], self.labels[:n])


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    return pearson(_average_ranks(np.asarray(predictions, float)), _average_ranks(np.asarray(labels, float)))


@dataclass(frozen=True)
class GlueTask:
    """A GLUE task as this project uses it."""

    name: str
    folder: str
    kind: str  # "classification" | "regression"
    labels: tuple[str, ...]
    text_columns: tuple[tuple[str, ...], ...]  # accepted column names per text field
    label_columns: tuple[str, ...]
    hf_config: str
    metric_name: str

    def metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        if self.kind == "classification":
            return {"accuracy": accuracy(predictions, labels)}
        return {"pearson": pearson(predictions, labels), "spearman": spearman(predictions, labels)}


TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask(
        name="sst2",
        folder="SST-2",
        kind="classification",
        labels=("negative", "positive"),
        text_columns=(("sentence", "text"),),
        label_columns=("label",),
        hf_config="sst2",
        metric_name="accuracy",
    ),
    "stsb": GlueTask(
        name="stsb",
        folder="STS-B",
        kind="regression",
        labels=(),
        text_columns=(("sentence1", "text_a"), ("sentence2", "text_b")),
        label_columns=("score", "label"),
        hf_config="stsb",
        metric_name="pearson",
    ),
}


def get_task(name: str) -> GlueTask:
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


def _pick(header: Sequence[str], candidates: Sequence[str], path: Path) -> int:
    for name in candidates:
        if name in header:
            return list(header).index(name)
    raise DataError(f"{path}: expected a column named one of {list(candidates)}; found columns {list(header)}")


def _read_tsv(path: Path, task: GlueTask) -> LabeledData:
    if not path.exists():
        raise DataError(f"data file not found: {path} (expected the GLUE layout DIR/{task.folder}/<split>.tsv)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        text_idx = [_pick(header, names, path) for names in task.text_columns]
        label_idx = _pick(header, task.label_columns, path)
        inputs: list[TextInput] = []
        labels: list[float] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(text_idx + [label_idx]):
                raise DataError(f"{path}:{line_no}: expected {len(header)} columns; found {len(row)}")
            texts = [row[i].strip() for i in text_idx]
            try:
                label = float(row[label_idx])
            except ValueError:
                raise DataError(f"{path}:{line_no}: label {row[label_idx]!r} is not a number") from None
            inputs.append(texts[0] if len(texts) == 1 else (texts[0], texts[1]))
            labels.append(label)
    dtype = np.int64 if task.kind == "classification" else np.float32
    return LabeledData(inputs, np.asarray(labels, dtype=dtype))


def _fetch_with_datasets(task: GlueTask, split: str) -> LabeledData:
    """Hugging Face ``datasets`` fallback (needs network access to the hub)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            "no GLUE data dir found and the `datasets` package is not installed: pass --data-dir "
            "(GLUE layout) or `pip install datasets` on a machine with hub access"
        ) from None
    hf_split = "validation" if split == "dev" else split
    ds = datasets.load_dataset("glue", task.hf_config, split=hf_split)
    if task.kind == "classification":
        inputs: list[TextInput] = [str(s).strip() for s in ds["sentence"]]
        labels = np.asarray(ds["label"], dtype=np.int64)
    else:
        inputs = [(str(a).strip(), str(b).strip()) for a, b in zip(ds["sentence1"], ds["sentence2"])]
        labels = np.asarray(ds["label"], dtype=np.float32)
    return LabeledData(inputs, labels)


def load_glue(
    task: str | GlueTask,
    split: str,
    data_dir: str | os.PathLike | None,
    *,
    fetch: bool = False,
    fetcher: Callable[[GlueTask, str], LabeledData] = _fetch_with_datasets,
) -> LabeledData:
    """Load ``split`` ("train" or "dev") of a GLUE task from ``data_dir``.

    With ``fetch=True`` and no usable ``data_dir``, download through ``datasets``.
    """
    glue = task if isinstance(task, GlueTask) else get_task(task)
    if split not in ("train", "dev"):
        raise DataError(f"split must be 'train' or 'dev'; got {split!r}")
    if data_dir is not None and (Path(data_dir) / glue.folder).is_dir():
        return _read_tsv(Path(data_dir) / glue.folder / f"{split}.tsv", glue)
    if fetch:
        return fetcher(glue, split)
    where = f"{data_dir}/{glue.folder}" if data_dir is not None else "(no --data-dir given)"
    raise DataError(f"GLUE data not found at {where}; expected {glue.folder}/{split}.tsv under --data-dir")
