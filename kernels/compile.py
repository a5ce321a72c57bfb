"""Offline compilation of ``exit_step.cu`` with nvcc, one cubin per architecture (used by CI).

``python -m kernels [--arch sm_90 ...] [--out DIR]`` runs :func:`compile_all` and exits non-zero
with nvcc's own error text when any architecture fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kernels.elf import function_symbols
from kernels.spec import DEFAULT_ARCHS, KERNEL_NAMES, SOURCE_PATH

NVCC_FLAGS: tuple[str, ...] = ("-std=c++17", "-O3")
_ARCH_RE = re.compile(r"^sm_\d{2,3}[af]?$")


class KernelCompileError(RuntimeError):
    """nvcc failed, or a cubin lacks an expected entry point."""


@dataclass(frozen=True)
class ArchResult:
    arch: str
    cubin: Path | None  # None when nvcc failed
    returncode: int
    log: str  # nvcc stdout + stderr (warnings included)
    missing_symbols: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.cubin is not None and not self.missing_symbols


def find_nvcc() -> str | None:
    """Path of nvcc: $NVCC, then PATH, then $CUDA_HOME/bin; None if absent."""
    explicit = os.environ.get("NVCC")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    found = shutil.which("nvcc")
    if found:
        return found
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


def _check_arch(arch: str) -> str:
    if not _ARCH_RE.match(arch):
        raise ValueError(f"expected an architecture like 'sm_90', found {arch!r}")
    return arch


def compile_arch(arch: str, out_dir: Path, *, nvcc: str, source: Path = SOURCE_PATH,
                 expected: Sequence[str] = KERNEL_NAMES, timeout_s: float = 300.0) -> ArchResult:
    """Compile ``source`` for one architecture; check the entry points in the cubin."""
    _check_arch(arch)
    cubin = out_dir / f"{source.stem}.{arch}.cubin"
    cmd = [nvcc, "-cubin", f"-arch={arch}", *NVCC_FLAGS, "-o", str(cubin), str(source)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return ArchResult(arch, None, -1, f"nvcc timed out after {timeout_s:.0f} s: {' '.join(cmd)}")
    log = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or not cubin.is_file():
        return ArchResult(arch, None, proc.returncode or -1, f"$ {' '.join(cmd)}\n{log}")
    symbols = function_symbols(cubin.read_bytes())
    missing = tuple(name for name in expected if name not in symbols)
    return ArchResult(arch, cubin, 0, log, missing)


def compile_all(archs: Iterable[str] = DEFAULT_ARCHS, out_dir: str | os.PathLike[str] | None = None, *,
                source: str | os.PathLike[str] = SOURCE_PATH, raise_on_error: bool = True,
                max_workers: int | None = None) -> list[ArchResult]:
    """Compile ``source`` with ``nvcc -cubin -arch=sm_XX`` for every arch, in parallel.

    Cubins go to ``out_dir`` (a new temporary directory when None). With ``raise_on_error``
    a failure raises :class:`KernelCompileError` carrying nvcc's output for each failed arch.
    """
    archs = [_check_arch(a) for a in archs]
    if not archs:
        raise ValueError("expected at least one architecture, found none")
    nvcc = find_nvcc()
    if nvcc is None:
        raise KernelCompileError("expected nvcc on PATH (or $NVCC / $CUDA_HOME/bin/nvcc), found none")
    src = Path(source)
    if not src.is_file():
        raise KernelCompileError(f"expected the kernel source at {src}, found no file")
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="pabee-kernels-"))
    out.mkdir(parents=True, exist_ok=True)
    workers = max_workers or min(len(archs), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda a: compile_arch(a, out, nvcc=nvcc, source=src), archs))
    failed = [r for r in results if not r.ok]
    if failed and raise_on_error:
        raise KernelCompileError(format_failures(failed))
    return results


def format_failures(results: Iterable[ArchResult]) -> str:
    parts = []
    for r in results:
        if r.returncode != 0 or r.cubin is None:
            parts.append(f"[{r.arch}] nvcc failed (exit {r.returncode}):\n{r.log}")
        elif r.missing_symbols:
            parts.append(f"[{r.arch}] expected entry points {list(r.missing_symbols)} in {r.cubin}, found none")
    return "\n\n".join(parts)
