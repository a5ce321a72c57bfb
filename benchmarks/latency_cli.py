"""``python -m benchmarks latency BUILD_DIR --device cpu|cuda``: arguments for the latency benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="chain vs fused graph, wall-clock vs layer speed-up, vs PyTorch, batched")
    p.add_argument("build", help="build folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--executor", choices=["torch", "tensorrt"], default="torch", help="--device cuda only")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (ONNX Runtime and torch)")
    p.add_argument("--data-dir", default=None, help="GLUE layout (default: $PABEE_GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--n", type=int, default=200, help="dev sentences timed at batch 1")
    p.add_argument("--torch-n", type=int, default=100, help="sentences for the PyTorch reference comparison")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--block", type=int, default=25, help="variants alternate every BLOCK sentences (1: each sentence)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=None, help="default: the build's policy")
    p.add_argument("--json", default=None, help="write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from benchmarks.demo import default_data_dir

    if args.device == "cuda":
        from benchmarks.latency_gpu import run_gpu_latency

        run_gpu_latency(Path(args.build), args.executor, Path(args.json) if args.json else None)
        return 0
    from benchmarks.latency import CpuLatencyConfig, format_table, run_cpu_latency, write_json
    from runtime.policies import PatiencePolicy

    cfg = CpuLatencyConfig(
        build_dir=Path(args.build),
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
        threads=args.threads,
        n=args.n,
        torch_n=args.torch_n,
        reps=args.reps,
        block=args.block,
        batch_size=args.batch_size,
        policy=PatiencePolicy(args.patience) if args.patience else None,
    )
    result = run_cpu_latency(cfg)
    print(format_table(result))
    if args.json:
        write_json(result, Path(args.json))
    return 0
