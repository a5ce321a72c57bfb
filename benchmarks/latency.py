"""CPU latency benchmark: is the per-layer chain as fast as one fused graph, and does
early exit turn layer savings into wall-clock savings?

All timings in one run, on the same pre-tokenized dev sentences, the variants
interleaved in blocks of ``block`` sentences (each variant serves a stretch of
consecutive requests, as a server would; ``block=1`` alternates sentence by
sentence) and repeated; per-sentence medians are summed.

* ``chain_full_over_fused``: chain at full depth / one fused ONNX Runtime graph
  of the whole model (same fusions, same exits computed), batch 1.
* ``wallclock_over_layer_speedup``: measured early-exit speed-up (chain full /
  chain early, batch 1) / layer speed-up (L / mean exit layer).
* ``speedup_vs_torch_reference``: eager PyTorch reference with the same policy /
  our chain, batch 1.
* ``batched_throughput_over_ideal``: batch-32 samples/s with per-sample exits
  (compaction) / (full-depth batch-32 samples/s x layer speed-up).
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.timing import interleaved_medians
from runtime.data import get_task, load_glue
from runtime.engines import OrtOptions
from runtime.manifest import load_manifest
from runtime.policies import ExitPolicy, FullDepthPolicy
from runtime.session import Session, load
from runtime.tokenization import EncodedBatch

__all__ = ["CpuLatencyConfig", "run_cpu_latency", "format_table"]

TARGETS = {
    "chain_full_over_fused": ("<=", 1.03),
    "wallclock_over_layer_speedup": (">=", 0.95),
    "speedup_vs_torch_reference": (">=", 3.0),
    "batched_throughput_over_ideal": (">=", 0.9),
}


@dataclass(frozen=True)
class CpuLatencyConfig:
    build_dir: Path
    data_dir: Path | None
    threads: int = 1
    n: int = 200
    torch_n: int = 100
    reps: int = 3
    block: int = 25  # variants alternate every `block` sentences (1: sentence by sentence)
    batch_size: int = 32
    policy: ExitPolicy | None = None  # None: the build's default policy


class _FusedWholeModel:
    """The whole model exported as one graph and fused like the chain's engines."""

    def __init__(self, model_path: Path, workdir: Path, threads: int):
        import onnxruntime as ort

        from exporter.checkpoint import load_model_source
        from exporter.onnx_export import export_subgraphs, whole_model_spec
        from exporter.optimize import fuse_for_onnxruntime

        ckpt = load_model_source(model_path)
        model = ckpt.model.eval()
        model.set_attention("eager")
        spec = whole_model_spec(model)
        (exported,) = export_subgraphs(model, [spec], workdir)
        fused = fuse_for_onnxruntime(exported.path, workdir / "whole_model.ort.onnx", model.num_heads, model.hidden_size)
        self.fused_ops = fused.fused_ops
        self.input_names = [t.name for t in spec.inputs]
        self._session = ort.InferenceSession(
            str(fused.path), OrtOptions(intra_op_threads=threads).session_options(), providers=["CPUExecutionProvider"]
        )
        self.model = model

    def run(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "token_type_ids": batch.token_type_ids}
        return self._session.run(None, {k: feeds[k] for k in self.input_names})[0]


def _throughput(session: Session, batches: list[EncodedBatch], policy: ExitPolicy, reps: int) -> tuple[float, float]:
    """(samples per second, mean exit layer) at the given batches, best of ``reps``."""
    best = float("inf")
    exits = None
    for _ in range(reps):
        t0 = time.perf_counter()
        results = [session.run_encoded(b, policy) for b in batches]
        best = min(best, time.perf_counter() - t0)
        exits = np.concatenate([r.exit_layer for r in results])
    return sum(len(b) for b in batches) / best, float(exits.mean())


def run_cpu_latency(cfg: CpuLatencyConfig, log: Callable[[str], Any] = print) -> dict[str, Any]:
    import torch

    from exporter.reference import load_reference

    torch.set_num_threads(cfg.threads)
    manifest = load_manifest(cfg.build_dir)
    session = load(cfg.build_dir, OrtOptions(intra_op_threads=cfg.threads))
    policy = session.check_policy(cfg.policy)
    full = FullDepthPolicy()
    task = get_task(manifest.task["name"])
    data = load_glue(task, "dev", cfg.data_dir).head(cfg.n)
    singles = [session.encoder.encode([x]) for x in data.inputs]
    model_path = Path(manifest.source_model["path"])
    reference = load_reference(model_path, manifest.max_seq_len)
    num_layers = session.num_layers

    with tempfile.TemporaryDirectory() as tmp:
        log("exporting and fusing the whole model as one graph (baseline) ...")
        fused = _FusedWholeModel(model_path, Path(tmp), cfg.threads)
        for b in singles[:20]:  # warm-up
            fused.run(b)
            session.run_encoded(b, full)
            session.run_encoded(b, policy)
        log(f"batch 1: {len(singles)} sentences x {cfg.reps} repetitions, variants alternating every {cfg.block}")
        t = interleaved_medians(
            {
                "chain_full": lambda i: session.run_encoded(singles[i], full),
                "fused_whole_model": lambda i: fused.run(singles[i]),
                "chain_early": lambda i: session.run_encoded(singles[i], policy),
            },
            len(singles),
            cfg.reps,
            cfg.block,
        )
        torch_n = min(cfg.torch_n, len(singles))
        log(f"batch 1, PyTorch eager reference vs chain: {torch_n} sentences x {cfg.reps} ...")
        tt = interleaved_medians(
            {
                "torch_early": lambda i: reference.run_encoded(singles[i], policy),
                "chain_early": lambda i: session.run_encoded(singles[i], policy),
            },
            torch_n,
            cfg.reps,
            cfg.block,
        )
    exits = np.asarray([int(session.run_encoded(b, policy).exit_layer[0]) for b in singles])
    mean_exit = float(exits.mean())
    layer_speedup = num_layers / mean_exit
    wallclock_speedup = sum(t["chain_full"]) / sum(t["chain_early"])
    # Layer speed-up weighted by each sample's own full-depth cost: when long sentences exit later
    # than short ones, L / mean exit overstates what any runtime can achieve.
    full_cost = np.asarray(t["chain_full"])
    cost_weighted_layer_speedup = float(full_cost.sum() / (full_cost * exits / num_layers).sum())

    log(f"batch {cfg.batch_size}: throughput full depth vs per-sample early exit ...")
    batches = [
        session.encoder.encode(data.inputs[i : i + cfg.batch_size]) for i in range(0, len(data), cfg.batch_size)
    ]
    session.run_encoded(batches[0], policy)
    sps_full, _ = _throughput(session, batches, full, cfg.reps)
    sps_early, mean_exit_batched = _throughput(session, batches, policy, cfg.reps)
    ideal = sps_full * num_layers / mean_exit_batched

    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    result = {
        "chain_full_over_fused": sum(t["chain_full"]) / sum(t["fused_whole_model"]),
        "wallclock_over_layer_speedup": wallclock_speedup / layer_speedup,
        "speedup_vs_torch_reference": sum(tt["torch_early"]) / sum(tt["chain_early"]),
        "batched_throughput_over_ideal": sps_early / ideal,
        "details": {
            "policy": policy.to_dict(),
            "num_layers": num_layers,
            "mean_exit_layer": mean_exit,
            "layer_speedup": layer_speedup,
            "wallclock_speedup": wallclock_speedup,
            "cost_weighted_layer_speedup": cost_weighted_layer_speedup,
            "wallclock_over_cost_weighted_layer_speedup": wallclock_speedup / cost_weighted_layer_speedup,
            "median_ms_per_sample": {
                "chain_full": ms(t["chain_full"]),
                "fused_whole_model": ms(t["fused_whole_model"]),
                "chain_early": ms(t["chain_early"]),
                "torch_reference_early": ms(tt["torch_early"]),
            },
            "batched": {
                "batch_size": cfg.batch_size,
                "samples_per_s_full": sps_full,
                "samples_per_s_early": sps_early,
                "mean_exit_layer": mean_exit_batched,
                "ideal_samples_per_s": ideal,
            },
            "fused_ops_whole_model": fused.fused_ops,
            "fused_ops_chain": manifest.build_options.get("fused_ops", {}),
        },
        "setup": {
            "build": str(cfg.build_dir),
            "task": task.name,
            "n_batch1": len(singles),
            "n_torch": torch_n,
            "reps": cfg.reps,
            "block": cfg.block,
            "threads": cfg.threads,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version(),
            "onnxruntime": manifest.tool_versions.get("onnxruntime"),
            "torch": torch.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    result["targets"] = {
        name: {"target": f"{op} {bound}", "met": (result[name] <= bound) if op == "<=" else (result[name] >= bound)}
        for name, (op, bound) in TARGETS.items()
    }
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = ["| metric | value | target | met |", "|---|---|---|---|"]
    for name, target in result["targets"].items():
        lines.append(f"| `{name}` | {result[name]:.3f} | {target['target']} | {'yes' if target['met'] else 'NO'} |")
    d = result["details"]
    m = d["median_ms_per_sample"]
    lines.append("")
    lines.append(
        f"batch 1 median ms/sample: chain full {m['chain_full']:.3f}, fused whole model {m['fused_whole_model']:.3f}, "
        f"chain early {m['chain_early']:.3f}, PyTorch reference early {m['torch_reference_early']:.3f}; "
        f"mean exit {d['mean_exit_layer']:.2f}/{d['num_layers']} (layer speed-up {d['layer_speedup']:.2f}x, "
        f"wall-clock {d['wallclock_speedup']:.2f}x; layer speed-up weighted by each sample's full-depth cost "
        f"{d['cost_weighted_layer_speedup']:.2f}x, wall-clock over it {d['wallclock_over_cost_weighted_layer_speedup']:.3f})"
    )
    b = d["batched"]
    lines.append(
        f"batch {b['batch_size']}: {b['samples_per_s_full']:.0f} samples/s full depth, {b['samples_per_s_early']:.0f} "
        f"early exit, ideal {b['ideal_samples_per_s']:.0f}"
    )
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
