"""``python -m benchmarks demo``: arguments for ``benchmarks.demo.run_demo``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="train (or reuse) a small SST-2 MiniLM model, build it, compare full vs early exit")
    d.add_argument("--data-dir", default=None, help="GLUE layout (default: $PABEE_GLUE_DIR or ../shared/data/glue)")
    d.add_argument("--work-dir", default=None, help="where model.pt and the build go (default: artifacts/demo)")
    d.add_argument("--max-train-samples", type=int, default=16000)
    d.add_argument("--patience", type=int, default=2)
    d.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the timed runs")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--retrain", action="store_true", help="train even if a cached model exists")


def run(args: argparse.Namespace) -> int:
    from benchmarks.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        data_dir=Path(args.data_dir) if args.data_dir else None,
        work_dir=Path(args.work_dir) if args.work_dir else DemoConfig.work_dir,
        max_train_samples=args.max_train_samples,
        patience=args.patience,
        threads=args.threads,
        seed=args.seed,
        retrain=args.retrain,
    )
    run_demo(cfg)
    return 0
