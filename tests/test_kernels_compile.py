"""exit_step.cu compiles with nvcc for every target architecture and exports the expected ABI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kernels.compile import ArchResult, KernelCompileError, compile_all, find_nvcc
from kernels.elf import CubinFormatError, function_symbols, kernel_param_sizes
from kernels.spec import ARG_SIZES, DEFAULT_ARCHS, KERNEL_NAMES, KERNEL_SIGNATURES, SOURCE_PATH

NVCC = find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (nor $NVCC / $CUDA_HOME/bin)")


@pytest.fixture(scope="module")
def cubins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArchResult]:
    if NVCC is None:
        pytest.skip("nvcc is not on PATH (nor $NVCC / $CUDA_HOME/bin)")
    out = tmp_path_factory.mktemp("cubins")
    results = compile_all(DEFAULT_ARCHS, out, raise_on_error=False)  # in parallel
    return {r.arch: r for r in results}


@needs_nvcc
@pytest.mark.parametrize("arch", DEFAULT_ARCHS)
def test_compiles_with_every_entry_point(cubins: dict[str, ArchResult], arch: str) -> None:
    result = cubins[arch]
    assert result.returncode == 0 and result.cubin is not None, f"nvcc failed for {arch}:\n{result.log}"
    symbols = function_symbols(result.cubin.read_bytes())
    assert symbols == set(KERNEL_NAMES), (
        f"{arch}: expected exactly {sorted(KERNEL_NAMES)}, missing {sorted(set(KERNEL_NAMES) - symbols)}, "
        f"unexpected {sorted(symbols - set(KERNEL_NAMES))}"
    )
    assert result.ok


@needs_nvcc
@pytest.mark.parametrize("arch", DEFAULT_ARCHS)
def test_parameter_layout_matches_the_loader(cubins: dict[str, ArchResult], arch: str) -> None:
    """The argument list the loader packs (spec.KERNEL_SIGNATURES) is the one the cubin expects."""
    result = cubins[arch]
    assert result.cubin is not None, result.log
    sizes = kernel_param_sizes(result.cubin.read_bytes())
    for name, signature in KERNEL_SIGNATURES.items():
        expected = [ARG_SIZES[ctype] for _, ctype in signature]
        assert sizes.get(name) == expected, f"{arch} {name}: loader packs {expected}, cubin takes {sizes.get(name)}"


@needs_nvcc
def test_no_warnings_from_nvcc(cubins: dict[str, ArchResult]) -> None:
    noisy = {arch: r.log for arch, r in cubins.items() if "warning" in r.log.lower()}
    assert not noisy, f"nvcc warnings: {noisy}"


def test_source_is_nvrtc_compatible() -> None:
    """NVRTC ships no cuda_fp16.h or C/C++ standard headers: the source must not include any."""
    text = SOURCE_PATH.read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", text)
    assert not re.search(r"^\s*#\s*include\b", code, flags=re.MULTILINE)
    assert "__host__" not in code and "int main" not in code
    for kind_base in ("exit_full_step", "exit_patience_step", "exit_regression_step", "exit_entropy_step",
                      "exit_maxprob_step"):
        assert f"PABEE_DEFINE_STEP({kind_base}," in code


@needs_nvcc
def test_compile_errors_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(int* x) { x[0] = undefined_name; }\n')
    with pytest.raises(KernelCompileError, match=r"(?s)\[sm_80\] nvcc failed.*undefined_name"):
        compile_all(["sm_80"], tmp_path / "out", source=bad)
    ok = tmp_path / "ok.cu"
    ok.write_text('extern "C" __global__ void k(int* x) { x[0] = 1; }\n')
    with pytest.raises(KernelCompileError, match="expected entry points"):
        compile_all(["sm_80"], tmp_path / "out", source=ok)  # compiles, but lacks our kernels


def test_bad_arch_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected an architecture like 'sm_90'"):
        compile_all(["90"])


@needs_nvcc
def test_cli(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kernels", "--arch", "sm_89", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "exit_step.sm_89.cubin").is_file()


def test_elf_reader_rejects_non_elf() -> None:
    with pytest.raises(CubinFormatError, match="expected an ELF file"):
        function_symbols(b"not a cubin" * 10)


def _nvrtc_available() -> str | None:
    """None when NVRTC through cuda-python works here, else the reason it does not."""
    try:
        from kernels.loader import CudaPythonUnavailable, nvrtc_version

        nvrtc_version()
    except CudaPythonUnavailable as exc:
        return f"cuda-python/NVRTC not installed: {exc}"
    return None


def test_nvrtc_build_and_disk_cache(tmp_path: Path) -> None:
    """The loader's NVRTC path (no GPU needed): same entry points and ABI as nvcc, cached on disk."""
    reason = _nvrtc_available()
    if reason:
        pytest.skip(reason)
    from kernels.loader import compile_cubin

    data = compile_cubin("sm_90", cache_dir=tmp_path)
    assert function_symbols(data) == set(KERNEL_NAMES)
    sizes = kernel_param_sizes(data)
    for name, signature in KERNEL_SIGNATURES.items():
        assert sizes[name] == [ARG_SIZES[ctype] for _, ctype in signature]
    cached = list(tmp_path.glob("*-sm_90.cubin"))
    assert len(cached) == 1 and cached[0].read_bytes() == data
    cached[0].write_bytes(b"corrupt")  # a broken entry is rebuilt, not trusted
    assert compile_cubin("sm_90", cache_dir=tmp_path) == data
    assert cached[0].read_bytes() == data
