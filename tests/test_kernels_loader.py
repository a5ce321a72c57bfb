"""The loader's host side, without a GPU.

The launches of :class:`kernels.loader.ExitKernels` are redirected to an emulator that
reads the packed arguments exactly as a kernel would (raw pointers, counts, sizes) and
applies the NumPy reference to that memory. Run on CPU tensors this checks the loader's
plumbing: argument packing and order, pointer/size bookkeeping, grids, device counts and
the chain driver, end to end against runtime.policies.replay. The kernels' own arithmetic
is covered by tests/test_kernels_gpu.py on a GPU.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kernels.loader import (  # noqa: E402
    CudaPythonUnavailable,
    DeviceState,
    ExitKernels,
    import_cuda_core,
    pack_args,
    run_chain_device,
)
from kernels.params import KernelParams  # noqa: E402
from kernels.reference import (  # noqa: E402
    StateBuffers,
    compact_reference,
    gather_reference,
    row_count,
    step_reference,
)
from kernels.spec import (  # noqa: E402
    COMPACT_BLOCK,
    COMPACT_KERNEL,
    GATHER_KERNEL,
    MAX_GRID_Y,
    ROWS_PER_STEP_BLOCK,
    STEP_BLOCK,
    STEP_KERNELS,
)
from kernels.testing import REGRESSION_TAU, entropy_scores, make_trace, max_prob_scores, pick_threshold  # noqa: E402
from runtime.policies import (  # noqa: E402
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    PolicyError,
    RegressionPatiencePolicy,
    replay,
)

_BASE_TO_KIND = {base: kind for kind, base in STEP_KERNELS.items()}


def view(ptr: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A writable NumPy view of host memory at ``ptr`` (what a kernel sees through a pointer)."""
    count = int(np.prod(shape))
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    assert ptr != 0, "a kernel would dereference a null pointer here"
    raw = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def read_count(ptr: int) -> int | None:
    return None if ptr == 0 else int(view(ptr, np.int32, (1,))[0])


class Emulator:
    """Stands in for ExitKernels._launch: runs the reference on the memory behind the pointers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...], int]] = []

    def __call__(self, name: str, grid: tuple[int, ...], block: int, **values: Any) -> None:
        packed = pack_args(name, values)  # what cuda.core would receive
        assert len(packed) == len(values)
        self.calls.append((name, grid, block))
        if name == COMPACT_KERNEL:
            self._compact(grid, block, values)
        elif name == GATHER_KERNEL:
            self._gather(grid, block, values)
        else:
            self._step(name, grid, block, values)

    def _step(self, name: str, grid: tuple[int, ...], block: int, v: dict[str, Any]) -> None:
        base, suffix = name.rsplit("_", 1)
        dtype = {"f32": np.float32, "f16": np.float16}[suffix]
        capacity, classes = v["n_active"], v["num_classes"]
        assert block == STEP_BLOCK and grid[0] * ROWS_PER_STEP_BLOCK >= capacity
        count = read_count(v["n_active_dev"])
        logits = view(v["logits"], dtype, (capacity, classes))
        active = view(v["active_idx"], np.int32, (capacity,))
        n = row_count(capacity, count)
        batch = int(active[:n].max()) + 1 if n else 0
        state = StateBuffers(
            prev_label=view(v["prev_label"], np.int32, (batch,)),
            prev_value=view(v["prev_value"], np.float32, (batch,)),
            counter=view(v["counter"], np.int32, (batch,)),
            done=view(v["done"], np.uint8, (batch,)),
            exit_layer=view(v["exit_layer"], np.int32, (batch,)),
            exit_outputs=view(v["exit_outputs"], np.float32, (batch, classes)),
        )
        params = KernelParams(_BASE_TO_KIND[base], v["patience"], v["tau"], float(np.float32(v["threshold"])))
        step_reference(params, logits, active, state, layer=v["layer"], num_layers=v["num_layers"],
                       n_active_dev=count)

    def _compact(self, grid: tuple[int, ...], block: int, v: dict[str, Any]) -> None:
        assert grid == (1,) and block == COMPACT_BLOCK
        capacity = v["n_active"]
        active = view(v["active_idx"], np.int32, (capacity,))
        batch = int(active.max()) + 1 if capacity else 0
        result = compact_reference(view(v["done"], np.uint8, (batch,)), active,
                                   n_active_dev=read_count(v["n_active_dev"]))
        view(v["active_idx_out"], np.int32, (result.n_remaining,))[:] = result.active_idx
        view(v["keep_rows"], np.int32, (result.n_remaining,))[:] = result.keep_rows
        view(v["n_remaining"], np.int32, (1,))[0] = result.n_remaining

    def _gather(self, grid: tuple[int, ...], block: int, v: dict[str, Any]) -> None:
        n = row_count(v["n_rows"], read_count(v["n_rows_dev"]))
        assert grid[1] == min(v["n_rows"], MAX_GRID_Y) and grid[0] >= 1
        keep = view(v["keep_rows"], np.int32, (n,))
        src_rows = int(keep.max()) + 1 if n else 0
        src = view(v["src"], np.uint8, (src_rows, v["row_bytes"]))
        view(v["dst"], np.uint8, (n, v["row_bytes"]))[:] = gather_reference(src, keep)


@pytest.fixture()
def kern() -> ExitKernels:
    emulated = ExitKernels.__new__(ExitKernels)  # skip the GPU/NVRTC set-up
    emulated.torch_device = torch.device("cpu")
    emulated._torch = torch
    emulated.arch = "emulated"
    emulated._launch = Emulator()  # type: ignore[method-assign]
    return emulated


def policies_for(trace: np.ndarray) -> list[ExitPolicy]:
    if trace.shape[2] == 1:
        return [RegressionPatiencePolicy(1, REGRESSION_TAU), RegressionPatiencePolicy(2, 0.3)]
    return [
        FullDepthPolicy(),
        PatiencePolicy(1),
        PatiencePolicy(2),
        # away from every score: the kernels receive the threshold as fp32
        EntropyPolicy(pick_threshold(entropy_scores(trace), 0.3, margin=1e-4, low=0.0)),
        MaxProbPolicy(pick_threshold(max_prob_scores(trace), 0.7, margin=1e-4, low=0.0, high=1.0)),
    ]


@pytest.mark.parametrize("batch", [1, 7, 300])
@pytest.mark.parametrize("classes", [1, 3, 50])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_chain_through_the_loader_equals_replay(kern: ExitKernels, batch: int, classes: int, dtype: str) -> None:
    trace = make_trace(np.random.default_rng([batch, classes]), 5, batch, classes).astype(dtype)
    for policy in policies_for(trace):
        got = run_chain_device(kern, policy, torch.from_numpy(trace))
        want = replay(policy, trace)
        np.testing.assert_array_equal(got.exit_layer, want.exit_layer, err_msg=str(policy))
        np.testing.assert_array_equal(got.outputs, want.outputs.astype(np.float32), err_msg=str(policy))
    names = {name for name, _, _ in kern._launch.calls}  # type: ignore[attr-defined]
    assert COMPACT_KERNEL in names and GATHER_KERNEL in names
    assert any(name.endswith("_f16" if dtype == "float16" else "_f32") for name in names)


def test_device_counts_reach_the_kernels(kern: ExitKernels) -> None:
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.standard_normal((10, 4)).astype(np.float32))
    active = torch.arange(10, dtype=torch.int32).flip(0).contiguous()
    state = DeviceState.fresh(10, 4, "cpu")
    count = torch.tensor([4], dtype=torch.int32)
    kern.full_step(logits, active, state, layer=3, num_layers=3, n_active_dev=count)
    assert state.done.tolist() == [0] * 6 + [1] * 4  # rows 0..3 are samples 9..6
    out_idx, keep_rows, n_rem = (torch.full((10,), -7, dtype=torch.int32) for _ in range(3))
    kern.compact(state.done, active, out_idx, keep_rows, n_rem, n_active_dev=torch.tensor([8], dtype=torch.int32))
    assert n_rem[0].item() == 4 and out_idx[:4].tolist() == [5, 4, 3, 2] and keep_rows[:4].tolist() == [4, 5, 6, 7]
    src = torch.arange(30, dtype=torch.float32).reshape(10, 3)
    out = torch.zeros((6, 3), dtype=torch.float32)
    kern.gather(src, keep_rows, out, n_rows_dev=n_rem)
    assert out[:4].tolist() == src[4:8].tolist() and out[4:].abs().sum().item() == 0


def test_named_steps_pass_their_parameters(kern: ExitKernels) -> None:
    logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    active = torch.tensor([0, 1], dtype=torch.int32)
    state = DeviceState.fresh(2, 2, "cpu")
    kern.max_prob_step(logits, active, state, layer=1, num_layers=4, threshold=0.9)
    assert state.done.tolist() == [0, 1]
    state = DeviceState.fresh(2, 2, "cpu")
    kern.entropy_step(logits, active, state, layer=1, num_layers=4, threshold=0.7)
    assert state.done.tolist() == [1, 1]
    state = DeviceState.fresh(2, 2, "cpu")
    for layer in (1, 2):
        kern.patience_step(logits, active, state, layer=layer, num_layers=4, patience=1)
    assert state.exit_layer.tolist() == [2, 2] and state.counter.tolist() == [1, 1]
    state = DeviceState.fresh(2, 1, "cpu")
    for layer, ys in enumerate(([0.0, 1.0], [0.1, 1.5]), start=1):
        kern.regression_step(torch.tensor(ys)[:, None].contiguous(), active, state, layer=layer, num_layers=4,
                             patience=1, tau=0.2)
    assert state.exit_layer.tolist() == [2, 0]


def test_validation_happens_before_launch(kern: ExitKernels) -> None:
    state = DeviceState.fresh(4, 3, "cpu")
    logits = torch.zeros((4, 3))
    active = torch.arange(4, dtype=torch.int32)
    step = kern.patience_step
    with pytest.raises(ValueError, match="logits: expected dtype float32 or float16, found float64"):
        step(logits.double(), active, state, layer=1, num_layers=2, patience=1)
    with pytest.raises(ValueError, match="active_idx: expected dtype int32, found int64"):
        step(logits, active.long(), state, layer=1, num_layers=2, patience=1)
    with pytest.raises(ValueError, match="contiguous"):
        step(torch.zeros((3, 4)).t(), active, state, layer=1, num_layers=2, patience=1)
    with pytest.raises(ValueError, match=r"expected layer in 1..2, found 3"):
        step(logits, active, state, layer=3, num_layers=2, patience=1)
    with pytest.raises(PolicyError, match="patience"):
        step(logits, active, state, layer=1, num_layers=2, patience=0)
    with pytest.raises(PolicyError, match="one output per row"):
        kern.regression_step(logits, active, state, layer=1, num_layers=2, patience=1, tau=0.1)
    bad_state = DeviceState.fresh(4, 3, "cpu")
    bad_state.counter = bad_state.counter.long()
    with pytest.raises(ValueError, match="state.counter: expected dtype int32, found int64"):
        step(logits, active, bad_state, layer=1, num_layers=2, patience=1)
    with pytest.raises(ValueError, match="distinct from active_idx"):
        kern.compact(state.done, active, active, torch.zeros(4, dtype=torch.int32), torch.zeros(1, dtype=torch.int32))
    with pytest.raises(ValueError, match="room for 4"):
        kern.compact(state.done, active, torch.zeros(3, dtype=torch.int32), torch.zeros(4, dtype=torch.int32),
                     torch.zeros(1, dtype=torch.int32))
    src = torch.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="overlap"):
        kern.gather(src, active, src[:2])
    with pytest.raises(ValueError, match=r"out: expected shape \[n, 2, 2\]"):
        kern.gather(src, active, torch.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected dtype float32, found float16"):
        kern.gather(src, active, torch.zeros((2, 2, 2), dtype=torch.float16))
    assert kern._launch.calls == []  # type: ignore[attr-defined]


def test_pack_args_order_types_and_ranges() -> None:
    values = dict(src=16, dst=32, keep_rows=48, n_rows_dev=None, n_rows=5, row_bytes=2**40)
    packed = pack_args(GATHER_KERNEL, values)
    assert packed[:4] == (16, 32, 48, 0)
    assert isinstance(packed[4], np.int32) and isinstance(packed[5], np.int64) and packed[5] == 2**40
    with pytest.raises(ValueError, match="n_rows: expected a i32"):
        pack_args(GATHER_KERNEL, {**values, "n_rows": 2**31})
    with pytest.raises(TypeError, match="expected arguments"):
        pack_args(GATHER_KERNEL, {**values, "extra": 1})
    step_values = dict(logits=1, active_idx=2, n_active_dev=0, n_active=3, num_classes=4, layer=1, num_layers=2,
                       patience=1, tau=0.25, threshold=0.5, prev_label=5, prev_value=6, counter=7, done=8,
                       exit_layer=9, exit_outputs=10)
    packed = pack_args("exit_regression_step_f32", step_values)
    assert isinstance(packed[8], np.float64) and isinstance(packed[9], np.float32)


def test_missing_cuda_python_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.core", None)
    with pytest.raises(CudaPythonUnavailable, match="pip install cuda-python"):
        import_cuda_core()


def test_exit_kernels_without_gpu_or_cuda_python_fails_clearly() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: tests/test_kernels_gpu.py covers construction")
    with pytest.raises((CudaPythonUnavailable, RuntimeError), match="pip install|no CUDA GPU|found none"):
        ExitKernels()


def test_importing_the_package_loads_no_cuda_or_torch() -> None:
    code = ("import sys, kernels, kernels.loader, kernels.reference, kernels.compile, kernels.elf; "
            "bad = [m for m in ('torch', 'cuda', 'cupy') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
