"""GPU latency benchmark: what the device-side exit step costs, and whether early exit on the
GPU turns layer savings into wall-clock savings.

``python -m benchmarks latency BUILD --device cuda [--executor torch|tensorrt] --json FILE``
calls ``run_gpu_latency``. One ``GpuChain`` on one CUDA stream, the exit kernels of
``kernels/``; the same pre-tokenized dev sentences for every variant, variants interleaved
request by request and repeated; per-request medians are summed. Every timed call ends
with the host holding the results (the chain's final copy), so times are end to end.

Variants, per batch size (1 and 32 by default):

* ``layers``: embeddings + every layer, no exit kernels (``GpuChain.run_layers``);
* ``chain_full``: full depth with the exit step after every layer and a host check of the
  active count after every layer (``check_every=1``);
* ``chain_full_nosync``: the same with no host check until the end (``check_every=L``);
* ``chain_early``: the build's (or the given) early-exit policy, ``check_every=1``;
* ``whole_graph``: embeddings + every layer captured as one CUDA graph (no exits).

Reported: exit-step overhead in µs per layer (``chain_full`` - ``layers``, and without the
host checks), chain at full depth / one graph of the whole model, wall-clock speed-up
(``chain_full`` / ``chain_early``, and ``whole_graph`` / ``chain_early``) against the layer
speed-up (L x rows / layers run), and host syncs per request.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.timing import interleaved_medians
from runtime.policies import ExitPolicy, FullDepthPolicy

__all__ = ["GpuLatencyConfig", "format_gpu_table", "run_gpu_latency", "summarize_batch"]

VARIANTS = ("layers", "chain_full", "chain_full_nosync", "chain_early", "whole_graph")
EXECUTORS = ("torch", "tensorrt")


@dataclass(frozen=True)
class GpuLatencyConfig:
    build_dir: Path
    executor: str = "torch"  # "torch": model.pt on CUDA; "tensorrt": the build's engines
    data_dir: Path | None = None  # GLUE layout; None: $PABEE_GLUE_DIR or ../shared/data/glue
    n: int = 200  # dev inputs (batch 1: n requests; batch B: n // B requests)
    reps: int = 3
    batch_sizes: tuple[int, ...] = (1, 32)
    policy: ExitPolicy | None = None  # None: the build's default policy
    layer_graphs: bool = True  # replay one CUDA graph per (layer, row bucket, sequence)
    seq_multiple: int = 16  # sequence bucket (fewer graph shapes); every variant uses the same padding
    precision: str = "fp32"  # torch executor only
    model_path: Path | None = None  # torch executor; None: the model.pt the manifest records
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor: expected one of {EXECUTORS}, found {self.executor!r}")
        for what, value in (("n", self.n), ("reps", self.reps), ("seq_multiple", self.seq_multiple)):
            if value < 1:
                raise ValueError(f"{what}: expected >= 1, found {value}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch_sizes: expected sizes >= 1, found {self.batch_sizes}")


# --------------------------------------------------------------------------- pure summaries


def summarize_batch(times: dict[str, list[float]], *, num_layers: int, rows: list[int],
                    early_exit_layers: list[np.ndarray], early_syncs: list[int],
                    early_rows_per_layer: list[tuple[int, ...]]) -> dict[str, Any]:
    """Metrics of one batch size from per-request median seconds of every variant.

    ``rows``: rows per request; the ``early_*`` lists: one entry per request of ``chain_early``.
    """
    missing = [v for v in VARIANTS if v not in times]
    if missing:
        raise ValueError(f"times: expected every variant {list(VARIANTS)}, missing {missing}")
    requests = len(rows)
    if any(len(times[v]) != requests for v in VARIANTS) or len(early_exit_layers) != requests:
        raise ValueError(f"expected {requests} requests for every variant and exit record")
    total = {v: float(sum(times[v])) for v in VARIANTS}
    samples = int(sum(rows))
    layers_run = float(sum(int(e.sum()) for e in early_exit_layers))
    rows_run = float(sum(sum(r) for r in early_rows_per_layer))
    layer_speedup = num_layers * samples / layers_run
    wallclock = total["chain_full"] / total["chain_early"]
    steps = requests * num_layers
    return {
        "requests": requests,
        "rows_per_request": samples / requests,
        "median_us_per_request": {v: 1e6 * statistics.median(times[v]) for v in VARIANTS},
        "exit_step_overhead_us": 1e6 * (total["chain_full"] - total["layers"]) / steps,
        "exit_step_overhead_nosync_us": 1e6 * (total["chain_full_nosync"] - total["layers"]) / steps,
        "chain_full_over_whole_graph": total["chain_full"] / total["whole_graph"],
        "layers_over_whole_graph": total["layers"] / total["whole_graph"],
        "mean_exit_layer": layers_run / samples,
        "layer_speedup": layer_speedup,
        "rows_run_speedup": num_layers * samples / rows_run,  # what the engines actually ran
        "wallclock_speedup": wallclock,
        "wallclock_speedup_vs_whole_graph": total["whole_graph"] / total["chain_early"],
        "wallclock_over_layer_speedup": wallclock / layer_speedup,
        "host_syncs_per_request": float(np.mean(early_syncs)),
        "host_syncs_per_request_full_depth": float(num_layers),  # L - 1 checks + the final copy
    }


def format_gpu_table(result: dict[str, Any]) -> str:
    lines = [
        f"GPU latency ({result['setup']['device']}, executor {result['setup']['executor']}, "
        f"policy {result['policy']}, {result['num_layers']} layers)",
        "| batch | exit step µs (sync / no sync) | chain full / whole graph | layers / whole graph | "
        "wall-clock speed-up (vs full / vs graph) | layer speed-up | host syncs/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, b in result["batches"].items():
        lines.append(
            f"| {size} | {b['exit_step_overhead_us']:.1f} / {b['exit_step_overhead_nosync_us']:.1f} | "
            f"{b['chain_full_over_whole_graph']:.3f} | {b['layers_over_whole_graph']:.3f} | "
            f"{b['wallclock_speedup']:.2f}x / {b['wallclock_speedup_vs_whole_graph']:.2f}x | "
            f"{b['layer_speedup']:.2f}x | {b['host_syncs_per_request']:.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- measurement


def _executor(cfg: GpuLatencyConfig, manifest: Any) -> Any:
    if cfg.executor == "tensorrt":
        from runtime.gpu.tensorrt import TensorRTExecutor

        return TensorRTExecutor(cfg.build_dir, manifest)
    from runtime.gpu.executors import TorchCudaExecutor

    model_path = cfg.model_path or Path(str(manifest.source_model.get("path") or ""))
    if not model_path.is_file():
        raise FileNotFoundError(
            f"the torch executor runs model.pt; expected it at {model_path} (recorded in the manifest), found "
            "nothing: pass model_path"
        )
    return TorchCudaExecutor.load(model_path, precision=cfg.precision)


def _exit_kernels(device: Any) -> Any:
    from kernels.loader import CudaPythonUnavailable, ExitKernels
    from runtime.gpu.deps import GpuUnavailableError

    try:
        return ExitKernels(device)
    except CudaPythonUnavailable as exc:
        raise GpuUnavailableError(str(exc)) from exc


def run_gpu_latency(build_dir: Path, executor: str = "torch", json_path: Path | None = None, *,
                    config: GpuLatencyConfig | None = None, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the GPU benchmark on ``build_dir``; log a table, write ``json_path`` if given, return the results.

    ``config`` sets everything else (its ``build_dir``/``executor`` are replaced by the arguments).
    """
    from benchmarks.demo import default_data_dir
    from runtime.data import get_task, load_glue
    from runtime.gpu.chain import GpuChain, capacity_for, padded_seq
    from runtime.gpu.deps import require_cuda
    from runtime.gpu.graphs import CudaGraphExecutor, WholeModelGraph
    from runtime.manifest import load_manifest
    from runtime.policies import policy_from_dict
    from runtime.tokenization import TextEncoder

    if config is None:
        cfg = GpuLatencyConfig(Path(build_dir), executor)
    else:
        cfg = dataclasses.replace(config, build_dir=Path(build_dir), executor=executor)
    torch, _ = require_cuda()
    manifest = load_manifest(cfg.build_dir)
    policy = cfg.policy or policy_from_dict(manifest.default_policy)
    full = FullDepthPolicy()
    num_layers = manifest.num_layers
    tokenizer = (cfg.build_dir / manifest.tokenizer["file"]).read_text(encoding="utf-8")
    encoder = TextEncoder(tokenizer, manifest.max_seq_len, int(manifest.tokenizer["pad_id"]))
    data = load_glue(get_task(manifest.task["name"]), "dev", cfg.data_dir or default_data_dir()).head(cfg.n)

    plain = _executor(cfg, manifest)
    kernels = _exit_kernels(plain.device)
    capacity, max_seq = capacity_for(plain, max(cfg.batch_sizes), manifest.max_seq_len)
    stepped = CudaGraphExecutor(plain) if cfg.layer_graphs else plain
    chain = GpuChain(stepped, kernels, capacity=capacity, max_seq=max_seq, seq_multiple=cfg.seq_multiple)
    graph_chain = GpuChain(plain, kernels, capacity=capacity, max_seq=max_seq, seq_multiple=cfg.seq_multiple)

    batches_out: dict[str, Any] = {}
    for size in cfg.batch_sizes:
        size = min(size, capacity, len(data))
        inputs = data.inputs
        batches = [encoder.encode(inputs[i:i + size]) for i in range(0, len(inputs) - size + 1, size)]
        whole: dict[tuple[int, int], WholeModelGraph] = {}

        def whole_graph(i: int) -> Any:
            batch = batches[i]
            key = (len(batch), padded_seq(batch.input_ids.shape[1], cfg.seq_multiple, max_seq))
            if key not in whole:
                whole[key] = WholeModelGraph(graph_chain, batch)
            return whole[key].run(batch)

        variants = {
            "layers": lambda i: chain.run_layers(batches[i]),
            "chain_full": lambda i: chain.run(batches[i], full, check_every=1),
            "chain_full_nosync": lambda i: chain.run(batches[i], full, check_every=num_layers),
            "chain_early": lambda i: chain.run(batches[i], policy, check_every=1),
            "whole_graph": whole_graph,
        }
        log(f"batch {size}: warm-up (captures CUDA graphs) ...")
        for i in range(len(batches)):
            for fn in variants.values():
                fn(i)
        log(f"batch {size}: {len(batches)} requests x {cfg.reps} interleaved repetitions ...")
        times = interleaved_medians(variants, len(batches), cfg.reps)
        early = [chain.run(b, policy, check_every=1) for b in batches]
        batches_out[str(size)] = summarize_batch(
            times, num_layers=num_layers, rows=[len(b) for b in batches],
            early_exit_layers=[r.exit_layer for r in early], early_syncs=[r.host_syncs for r in early],
            early_rows_per_layer=[r.rows_per_layer for r in early])

    result = {
        "policy": policy.to_dict(),
        "num_layers": num_layers,
        "batches": batches_out,
        "setup": {
            "build": str(cfg.build_dir),
            "executor": cfg.executor,
            "precision": (manifest.build_options.get("precision", "fp32") if cfg.executor == "tensorrt"
                          else cfg.precision),
            "layer_graphs": cfg.layer_graphs,
            "layer_graphs_captured": getattr(stepped, "num_graphs", 0),
            "seq_multiple": cfg.seq_multiple,
            "n": len(data),
            "reps": cfg.reps,
            "device": torch.cuda.get_device_name(plain.device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **cfg.extra,
        },
    }
    log(format_gpu_table(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
