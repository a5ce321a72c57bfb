"""``python -m kernels``: compile exit_step.cu with nvcc for each architecture (CI check)."""

from __future__ import annotations

import argparse
import sys

from kernels.compile import KernelCompileError, compile_all, format_failures
from kernels.spec import DEFAULT_ARCHS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels", description=__doc__)
    parser.add_argument("--arch", action="append", help=f"e.g. sm_90 (repeatable; default {' '.join(DEFAULT_ARCHS)})")
    parser.add_argument("--out", default=None, help="directory for the cubins (default: a new temporary one)")
    args = parser.parse_args(argv)
    try:
        results = compile_all(args.arch or DEFAULT_ARCHS, args.out, raise_on_error=False)
    except (KernelCompileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.ok]
    for r in results:
        status = "ok" if r.ok else "FAILED"
        print(f"{r.arch}: {status} {r.cubin if r.cubin else ''}".rstrip())
        if r.ok and r.log:
            print(f"  nvcc said:\n{r.log}")
    if failed:
        print(format_failures(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
