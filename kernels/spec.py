"""Names, launch shapes and buffer dtypes shared by the loader, the reference and the tests.

This module imports nothing beyond the standard library so that ``import kernels`` works on
machines without CUDA, torch or cuda-python.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

SOURCE_PATH: Path = Path(__file__).with_name("exit_step.cu")

# runtime.policies kind -> kernel base name; each base has an _f32 and an _f16 entry point.
STEP_KERNELS: Mapping[str, str] = MappingProxyType(
    {
        "full": "exit_full_step",
        "patience": "exit_patience_step",
        "regression-patience": "exit_regression_step",
        "entropy": "exit_entropy_step",
        "max-prob": "exit_maxprob_step",
    }
)
LOGIT_SUFFIXES: Mapping[str, str] = MappingProxyType({"float32": "f32", "float16": "f16"})

COMPACT_KERNEL = "exit_compact"
GATHER_KERNEL = "gather_rows"

KERNEL_NAMES: tuple[str, ...] = tuple(
    f"{base}_{suffix}" for base in STEP_KERNELS.values() for suffix in LOGIT_SUFFIXES.values()
) + (COMPACT_KERNEL, GATHER_KERNEL)

# Argument lists, in order (the ABI between loader.py and exit_step.cu). The loader packs
# launch arguments through these; tests check them against the cubin's parameter records.
ARG_SIZES: Mapping[str, int] = MappingProxyType({"ptr": 8, "i32": 4, "i64": 8, "f32": 4, "f64": 8})
STEP_SIGNATURE: tuple[tuple[str, str], ...] = (
    ("logits", "ptr"),
    ("active_idx", "ptr"),
    ("n_active_dev", "ptr"),
    ("n_active", "i32"),
    ("num_classes", "i32"),
    ("layer", "i32"),
    ("num_layers", "i32"),
    ("patience", "i32"),
    ("tau", "f64"),
    ("threshold", "f32"),
    ("prev_label", "ptr"),
    ("prev_value", "ptr"),
    ("counter", "ptr"),
    ("done", "ptr"),
    ("exit_layer", "ptr"),
    ("exit_outputs", "ptr"),
)
COMPACT_SIGNATURE: tuple[tuple[str, str], ...] = (
    ("done", "ptr"),
    ("active_idx", "ptr"),
    ("n_active_dev", "ptr"),
    ("n_active", "i32"),
    ("active_idx_out", "ptr"),
    ("keep_rows", "ptr"),
    ("n_remaining", "ptr"),
)
GATHER_SIGNATURE: tuple[tuple[str, str], ...] = (
    ("src", "ptr"),
    ("dst", "ptr"),
    ("keep_rows", "ptr"),
    ("n_rows_dev", "ptr"),
    ("n_rows", "i32"),
    ("row_bytes", "i64"),
)

# Launch shapes (see the header of exit_step.cu for the contract).
STEP_BLOCK = 256  # threads; one warp per packed row -> 8 rows per block
ROWS_PER_STEP_BLOCK = STEP_BLOCK // 32
COMPACT_BLOCK = 1024  # exactly one block of this many threads
GATHER_BLOCK = 256
GATHER_MAX_GRID_X = 4096  # blocks over the bytes of one row (grid-stride beyond)
MAX_GRID_Y = 65535  # rows stride over gridDim.y beyond this

KERNEL_SIGNATURES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        **{name: STEP_SIGNATURE for name in KERNEL_NAMES if name not in (COMPACT_KERNEL, GATHER_KERNEL)},
        COMPACT_KERNEL: COMPACT_SIGNATURE,
        GATHER_KERNEL: GATHER_SIGNATURE,
    }
)

# Per-sample state buffers (length = full batch B), in kernel argument order.
STATE_DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "prev_label": "int32",
        "prev_value": "float32",
        "counter": "int32",
        "done": "uint8",
        "exit_layer": "int32",
        "exit_outputs": "float32",  # [B, C]
    }
)

DEFAULT_ARCHS: tuple[str, ...] = ("sm_75", "sm_80", "sm_87", "sm_89", "sm_90")


def step_kernel_name(kind: str, logits_dtype: str) -> str:
    """Entry point for a policy kind and a logits dtype name ("float32"/"float16")."""
    if kind not in STEP_KERNELS:
        raise ValueError(f"expected a policy kind in {sorted(STEP_KERNELS)}, found {kind!r}")
    if logits_dtype not in LOGIT_SUFFIXES:
        raise ValueError(f"expected logits dtype in {sorted(LOGIT_SUFFIXES)}, found {logits_dtype!r}")
    return f"{STEP_KERNELS[kind]}_{LOGIT_SUFFIXES[logits_dtype]}"
