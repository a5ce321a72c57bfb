"""``python -m benchmarks``: the demo and (later) the benchmark harnesses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _run_demo(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train (or reuse) a small SST-2 MiniLM model, build it, compare full vs early exit")
    d.add_argument("--data-dir", default=None, help="GLUE layout (default: $PABEE_GLUE_DIR or ../shared/data/glue)")
    d.add_argument("--work-dir", default=None, help="where model.pt and the build go (default: artifacts/demo)")
    d.add_argument("--max-train-samples", type=int, default=16000)
    d.add_argument("--patience", type=int, default=2)
    d.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the timed runs")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--retrain", action="store_true", help="train even if a cached model exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from exporter.cli import USER_ERRORS as EXPORT_ERRORS
    from runtime.cli import USER_ERRORS as RUNTIME_ERRORS

    args = build_parser().parse_args(argv)
    handlers = {"demo": _run_demo}
    try:
        return handlers[args.command](args)
    except EXPORT_ERRORS + RUNTIME_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
