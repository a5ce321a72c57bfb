"""``python -m runtime``: predict texts and evaluate a build on GLUE.

Thin wrapper over ``runtime.load``, ``Session.predict`` and ``runtime.evaluate``.
User errors print one clean line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from runtime.data import DataError, get_task, load_glue
from runtime.engines import EngineError, OrtOptions
from runtime.manifest import ManifestError
from runtime.policies import (
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    PolicyError,
    RegressionPatiencePolicy,
    policy_from_dict,
)
from runtime.session import Session, load
from runtime.tokenization import InputError

__all__ = ["main", "policy_from_args"]

REFERENCE_BATCH_SIZE = 64

USER_ERRORS = (ManifestError, DataError, PolicyError, InputError, EngineError, OSError, ValueError)


def _add_policy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exit policy (default: the one recorded in the build)")
    g.add_argument("--patience", type=int, default=None, help="PABEE patience; 0 runs every layer")
    g.add_argument("--tau", type=float, default=None, help="regression patience threshold |y_i - y_(i-1)| < tau")
    g.add_argument("--entropy", type=float, default=None, metavar="T", help="exit when softmax entropy < T (DeeBERT)")
    g.add_argument("--max-prob", type=float, default=None, metavar="P", help="exit when max softmax >= P")
    g.add_argument("--full-depth", action="store_true", help="never exit early")


def policy_from_args(args: argparse.Namespace, session: Session) -> ExitPolicy:
    chosen = [
        name
        for name, value in (("--patience", args.patience), ("--entropy", args.entropy), ("--max-prob", args.max_prob))
        if value is not None
    ] + (["--full-depth"] if args.full_depth else [])
    if len(chosen) > 1:
        raise PolicyError(f"choose one exit policy; got {' and '.join(chosen)}")
    regression = session.task.is_regression
    if args.full_depth or args.patience == 0:
        return FullDepthPolicy()
    if args.patience is not None:
        if regression:
            tau = args.tau if args.tau is not None else session.default_policy.to_dict().get("tau")
            if tau is None:
                raise PolicyError("a regression build needs --tau with --patience")
            return RegressionPatiencePolicy(args.patience, float(tau))
        if args.tau is not None:
            raise PolicyError("--tau applies to regression builds only; this build is classification")
        return PatiencePolicy(args.patience)
    if args.entropy is not None:
        return EntropyPolicy(args.entropy)
    if args.max_prob is not None:
        return MaxProbPolicy(args.max_prob)
    if args.tau is not None:
        spec = dict(session.default_policy.to_dict(), tau=args.tau)
        return policy_from_dict(spec)
    return session.default_policy


def _session_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", help="build folder made by `python -m exporter build`")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    p.add_argument("--batch-size", type=int, default=32)


def _open(args: argparse.Namespace) -> Session:
    return load(args.build, OrtOptions(intra_op_threads=args.threads), batch_size=args.batch_size)


def _run_predict(args: argparse.Namespace) -> int:
    session = _open(args)
    policy = policy_from_args(args, session)
    if args.pair:
        if len(args.texts) % 2:
            raise InputError(f"--pair expects an even number of texts (text_a text_b ...); got {len(args.texts)}")
        inputs = [(args.texts[i], args.texts[i + 1]) for i in range(0, len(args.texts), 2)]
    else:
        inputs = list(args.texts)
    for prediction in session.predict(inputs, policy=policy, trace=args.trace):
        print(json.dumps(prediction.to_dict()))
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from runtime.evaluate import count_mismatches, evaluate

    session = _open(args)
    policy = policy_from_args(args, session)
    task = get_task(args.task)
    if task.name != session.task.name:
        raise DataError(f"this build was trained for task {session.task.name!r}; --task is {task.name!r}")
    data = load_glue(task, "dev", args.data_dir, fetch=args.fetch_data).head(args.max_samples)
    report, predictions = evaluate(session, data, task, policy, args.batch_size)
    if args.compare_reference:
        from exporter.reference import load_reference
        from runtime.manifest import load_manifest

        manifest = load_manifest(args.build, verify=False)
        model_path = Path(args.model or manifest.source_model.get("path") or "")
        if not model_path.exists():
            raise FileNotFoundError(f"reference model not found: {model_path} (pass --model model.pt)")
        # The reference runs at its own efficient batch size: per-row results do not depend on the
        # batch, so this also checks that the compiled chain at --batch-size agrees with it.
        reference = load_reference(model_path, manifest.max_seq_len, REFERENCE_BATCH_SIZE)
        expected = reference.predict(data.inputs, policy=policy)
        report.reference_mismatches, report.mismatch_examples = count_mismatches(predictions, expected)
    out = report.to_dict()
    print(
        f"{task.name}: {report.metric_name} {report.metric:.4f} | mean exit layer {report.mean_exit_layer:.2f} "
        f"of {report.num_layers} | layer speed-up {report.layer_speedup:.2f}x | policy {report.policy}"
        + (f" | reference_mismatches {report.reference_mismatches}" if report.reference_mismatches is not None else "")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="predict texts; one JSON object per line")
    _session_args(p)
    p.add_argument("texts", nargs="+", help="texts to classify (with --pair: text_a text_b ...)")
    p.add_argument("--pair", action="store_true", help="consecutive texts form (text_a, text_b) pairs")
    p.add_argument("--trace", action="store_true", help="also return every layer's exit output")
    _add_policy_args(p)
    e = sub.add_parser("evaluate", help="metric, mean exit layer and layer speed-up on a GLUE dev set")
    _session_args(e)
    e.add_argument("--task", required=True, choices=["sst2", "stsb"])
    e.add_argument("--data-dir", default=None)
    e.add_argument("--fetch-data", action="store_true", help="no data dir: download GLUE with HF datasets")
    e.add_argument("--max-samples", type=int, default=None)
    e.add_argument(
        "--compare-reference", action="store_true", help="count differences vs the PyTorch reference (run at batch 64)"
    )
    e.add_argument("--model", default=None, help="model.pt for --compare-reference (default: the build's source)")
    e.add_argument("--json", default=None, help="write the report as JSON")
    _add_policy_args(e)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"predict": _run_predict, "evaluate": _run_evaluate}
    try:
        return handlers[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
