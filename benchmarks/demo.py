"""The end-to-end demo: train (or reuse) a small SST-2 MiniLM model, build it, evaluate.

Prints, for the same dev set, accuracy / mean exit layer / wall-clock per sample
at full depth vs with early exit (batch size 1, the two modes interleaved in
chunks so machine noise hits both alike), and the count of predictions that
differ from the eager PyTorch reference.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporter.build import BuildOptions, build
from exporter.train import TrainConfig, train
from runtime.data import LabeledData, get_task, load_glue
from runtime.engines import OrtOptions
from runtime.evaluate import count_mismatches
from runtime.policies import ExitPolicy, FullDepthPolicy, PatiencePolicy
from runtime.session import Session, load

__all__ = ["DemoConfig", "default_data_dir", "run_demo"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path | None:
    """``$PABEE_GLUE_DIR``, else ``../shared/data/glue`` next to the checkout, else None (fetch)."""
    env = os.environ.get("PABEE_GLUE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "glue")
    for candidate in candidates:
        if (candidate / "SST-2" / "train.tsv").exists():
            return candidate
    return None


@dataclass(frozen=True)
class DemoConfig:
    data_dir: Path | None = None
    work_dir: Path = REPO_ROOT / "artifacts" / "demo"
    max_train_samples: int = 16000
    patience: int = 2
    threads: int = 1
    seed: int = 42
    retrain: bool = False


@dataclass
class ModeResult:
    name: str
    accuracy: float
    mean_exit_layer: float
    ms_per_sample: float


def _timed_predictions(session: Session, data: LabeledData, policies: dict[str, ExitPolicy], chunk: int = 32):
    """Batch-1 predictions for every policy, interleaved chunk by chunk; per-policy seconds per chunk."""
    preds: dict[str, list] = {name: [] for name in policies}
    chunk_seconds: dict[str, list[float]] = {name: [] for name in policies}
    for start in range(0, len(data), chunk):
        inputs = data.inputs[start : start + chunk]
        for name, policy in policies.items():
            t0 = time.perf_counter()
            preds[name].extend(session.predict(inputs, policy=policy, batch_size=1))
            chunk_seconds[name].append((time.perf_counter() - t0) / len(inputs))
    return preds, chunk_seconds


def run_demo(cfg: DemoConfig, log=print) -> list[ModeResult]:
    data_dir = cfg.data_dir or default_data_dir()
    fetch = data_dir is None
    if fetch:
        log("no GLUE data dir found: fetching SST-2 with Hugging Face `datasets` (needs network access)")
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    model_path = cfg.work_dir / "model.pt"
    build_dir = cfg.work_dir / "build"
    if cfg.retrain or not model_path.exists():
        log(f"[1/3] training MiniLM-L6 multi-exit on {cfg.max_train_samples} SST-2 samples -> {model_path}")
        train(
            TrainConfig(
                task="sst2",
                data_dir=str(data_dir) if data_dir else None,
                max_train_samples=cfg.max_train_samples,
                seed=cfg.seed,
                patience=cfg.patience,
                fetch_data=fetch,
            ),
            model_path,
            log=log,
        )
    else:
        log(f"[1/3] reusing cached {model_path} (pass --retrain to train again)")
    log(f"[2/3] building {build_dir}")
    build(model_path, build_dir, BuildOptions(force=True), log=log)

    log("[3/3] evaluating on SST-2 dev at batch size 1")
    task = get_task("sst2")
    dev = load_glue(task, "dev", data_dir, fetch=fetch)
    session = load(build_dir, OrtOptions(intra_op_threads=cfg.threads))
    policies: dict[str, ExitPolicy] = {"full depth": FullDepthPolicy(), f"patience {cfg.patience}": PatiencePolicy(cfg.patience)}
    preds, chunk_seconds = _timed_predictions(session, dev, policies)
    results = []
    for name in policies:
        labels = np.asarray([p.label_index for p in preds[name]])
        exits = np.asarray([p.exit_layer for p in preds[name]])
        results.append(
            ModeResult(
                name=name,
                accuracy=float(np.mean(labels == dev.labels)),
                mean_exit_layer=float(exits.mean()),
                ms_per_sample=1000 * statistics.median(chunk_seconds[name]),
            )
        )
    from exporter.reference import load_reference

    reference = load_reference(model_path, session.encoder.max_length)
    early = policies[f"patience {cfg.patience}"]
    mismatches, _ = count_mismatches(preds[f"patience {cfg.patience}"], reference.predict(dev.inputs, policy=early))

    full = results[0]
    log("")
    log(f"SST-2 dev ({len(dev)} sentences), batch 1, {cfg.threads} thread(s), ONNX Runtime per-layer chain")
    log("| mode | accuracy | mean exit layer | ms / sample | wall-clock speed-up |")
    log("|---|---|---|---|---|")
    for r in results:
        log(
            f"| {r.name} | {r.accuracy:.4f} | {r.mean_exit_layer:.2f} / {session.num_layers} | "
            f"{r.ms_per_sample:.2f} | {full.ms_per_sample / r.ms_per_sample:.2f}x |"
        )
    log(f"layer speed-up (L / mean exit): {session.num_layers / results[1].mean_exit_layer:.2f}x")
    log(f"predictions or exit layers differing from the PyTorch reference: {mismatches} of {len(dev)}")
    return results
