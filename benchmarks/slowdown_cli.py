"""``python -m benchmarks slowdown``: arguments for ``benchmarks.slowdown.run_slowdown``."""

from __future__ import annotations

import argparse
from pathlib import Path

MACHINE_DEFAULT = "unspecified (pass --machine)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "slowdown",
        help="run slowdown attacks (accuracy baseline, SAME, WAFFLE) and measure clean vs adversarial "
        "exit layers, latency and throughput on the compiled runtime",
    )
    s.add_argument("build_dir", type=Path, help="a build folder (runtime.load); its model.pt gives the gradients")
    s.add_argument("--task", required=True, help="sst2 | stsb (must match the build)")
    s.add_argument("--data-dir", type=Path, default=None,
                   help="GLUE layout (default: $PABEE_GLUE_DIR or ../shared/data/glue)")
    s.add_argument("--attacks", default="accuracy,same,waffle", help="comma-separated recipe names")
    s.add_argument("--n", type=int, default=200, help="inputs to attack (a seeded sample of the split)")
    s.add_argument("--patience", type=int, default=None, help="PABEE patience (default: the build's policy)")
    s.add_argument("--tau", type=float, default=None, help="regression agreement threshold (default: the build's)")
    s.add_argument("--out", type=Path, required=True, help="output folder for report.json/md, TSV and plots")
    s.add_argument("--split", default="dev", choices=["dev", "train"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (and torch threads)")
    s.add_argument("--latency-passes", type=int, default=5, help="interleaved batch-1 passes over every set")
    s.add_argument("--throughput-passes", type=int, default=3)
    s.add_argument("--model", type=Path, default=None, help="model.pt of the build (default: manifest source_model)")
    s.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    s.add_argument("--cache-dir", type=Path, default=None,
                   help="where the nltk-readable WordNet copy goes (default: $PABEE_CACHE_DIR or ~/.cache/pabee-deploy)")
    s.add_argument("--waffle-alpha", type=float, default=0.5, help="WAFFLE success threshold on S(x)")
    s.add_argument("--machine", default=MACHINE_DEFAULT, help="machine description written into the report")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import sys

    import torch

    from benchmarks.attacks.wordnet import WordNetError
    from benchmarks.demo import default_data_dir
    from benchmarks.slowdown import SlowdownConfig, run_slowdown

    if args.n < 1:
        raise ValueError(f"--n must be >= 1; got {args.n}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    cfg = SlowdownConfig(
        build_dir=args.build_dir,
        task=args.task,
        out_dir=args.out,
        data_dir=args.data_dir or default_data_dir(),
        attacks=tuple(a.strip() for a in args.attacks.split(",") if a.strip()),
        n=args.n,
        patience=args.patience,
        tau=args.tau,
        seed=args.seed,
        threads=args.threads,
        latency_passes=args.latency_passes,
        throughput_passes=args.throughput_passes,
        model_path=args.model,
        wordnet_dir=args.wordnet_dir,
        cache_dir=args.cache_dir,
        split=args.split,
        machine=args.machine,
        progress=not args.no_progress,
        recipe_overrides={"waffle": {"alpha": args.waffle_alpha}},
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)  # gradients: more threads than free cores only slows torch down
    try:
        run_slowdown(cfg)
    except WordNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(previous_threads)
    return 0
