"""``python -m benchmarks``: the demo and the benchmark harnesses.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["COMMANDS", "main"]

# subcommand -> module providing add_parser(sub) and run(args)
COMMANDS: dict[str, str] = {
    "demo": "benchmarks.demo_cli",
    "latency": "benchmarks.latency_cli",
    "slowdown": "benchmarks.slowdown_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from exporter.cli import USER_ERRORS as EXPORT_ERRORS
    from runtime.cli import USER_ERRORS as RUNTIME_ERRORS

    args = build_parser().parse_args(argv)
    try:
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except EXPORT_ERRORS + RUNTIME_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
