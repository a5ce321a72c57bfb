"""The real CUDA kernels (through kernels.loader) against the NumPy reference and runtime.policies.

Needs a CUDA GPU, torch with CUDA and cuda-python (``pip install "cuda-python[all]"``);
skipped otherwise. Patience, regression patience and full depth must match bit for bit.
Entropy/max-prob thresholds are chosen at least 1e-4 away from every float64 score,
because the device evaluates them in fp32 (see exit_step.cu).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kernels.params import KernelParams  # noqa: E402
from kernels.reference import (  # noqa: E402
    StateBuffers,
    compact_reference,
    gather_reference,
    run_chain_reference,
    step_reference,
)
from kernels.spec import ARG_SIZES, KERNEL_SIGNATURES  # noqa: E402
from kernels.testing import (  # noqa: E402
    REGRESSION_TAU,
    entropy_scores,
    make_trace,
    max_prob_scores,
    pick_threshold,
)
from runtime.policies import (  # noqa: E402
    EntropyPolicy,
    ExitPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    RegressionPatiencePolicy,
    replay,
)

MARGIN = 1e-4  # distance between an entropy/max-prob threshold and any score
BATCHES = (1, 7, 4096)
CLASSES = (2, 3, 1000)
KINDS = ("full", "patience", "regression-patience", "entropy", "max-prob")


def cuda(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).cuda()


def assert_states_equal(got: StateBuffers, want: StateBuffers, what: str) -> None:
    for name in ("prev_label", "prev_value", "counter", "done", "exit_layer", "exit_outputs"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=f"{what}: state.{name}")


def random_step_case(rng: np.random.Generator, kind: str, batch: int, classes: int, dtype: str):
    """A prior state (some samples already done), a packed batch and its logits."""
    total = batch + 5
    state = StateBuffers.fresh(total, classes)
    trace = make_trace(rng, 2, total, classes)
    state.prev_label[:] = rng.integers(-1, classes, total)
    state.counter[:] = rng.integers(0, 3, total)
    offsets = rng.choice(np.array([0.0, 0.125, -0.125, 0.25, -0.25, 0.5, np.nan], dtype=np.float32), total)
    state.prev_value[:] = trace[0, :, 0] - offsets  # |diff| hits tau (0.25) exactly on the lattice
    running = rng.permutation(total)[:batch]
    state.done[:] = 1
    state.done[running] = 0
    active_idx = running.astype(np.int32)
    logits = trace[0, running].astype(dtype)
    # Where the previous label is valid, make it the current argmax half the time.
    labels = np.argmax(np.nan_to_num(logits.astype(np.float32), nan=-np.inf), axis=1)
    agree = rng.random(batch) < 0.5
    state.prev_label[running[agree]] = labels[agree]
    return state, active_idx, logits


def params_for(kind: str, logits: np.ndarray) -> KernelParams:
    scores = logits.astype(np.float32)[None]
    if kind == "entropy":
        return KernelParams(kind, threshold=pick_threshold(entropy_scores(scores), 0.4, margin=MARGIN, low=0.0))
    if kind == "max-prob":
        return KernelParams(kind, threshold=pick_threshold(max_prob_scores(scores), 0.6, margin=MARGIN, low=0.0,
                                                           high=1.0))
    if kind == "regression-patience":
        return KernelParams(kind, patience=2, tau=REGRESSION_TAU)
    return KernelParams(kind, patience=2 if kind == "patience" else 0)


def test_argument_layout_matches_the_loader(cuda_kernels) -> None:
    for name, signature in KERNEL_SIGNATURES.items():
        try:
            sizes = cuda_kernels.argument_sizes(name)
        except (AttributeError, NotImplementedError) as exc:
            pytest.skip(f"this cuda.core cannot report kernel arguments: {exc}")
        assert sizes == [ARG_SIZES[ctype] for _, ctype in signature], name


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("last_layer", [False, True])
def test_step_matches_reference(cuda_kernels, kind: str, batch: int, classes: int, dtype: str, last_layer: bool) -> None:
    if kind == "regression-patience":
        if classes != CLASSES[0]:
            pytest.skip("regression has one output per row: run once per batch size")
        classes = 1
    rng = np.random.default_rng([batch, classes, len(kind), int(last_layer)])
    state, active_idx, logits = random_step_case(rng, kind, batch, classes, dtype)
    params = params_for(kind, logits)
    num_layers = 12
    layer = num_layers if last_layer else 5

    want = state.copy()
    step_reference(params, logits, active_idx, want, layer=layer, num_layers=num_layers)

    from kernels.loader import DeviceState

    dev_state = DeviceState.from_numpy(state, cuda_kernels.torch_device)
    cuda_kernels.step(params, cuda(logits), cuda(active_idx), dev_state, layer=layer, num_layers=num_layers)
    assert_states_equal(dev_state.to_numpy(), want, f"{kind} {dtype} B={batch} C={classes}")


def chain_policies(trace: np.ndarray) -> list[ExitPolicy]:
    if trace.shape[2] == 1:
        return [RegressionPatiencePolicy(1, REGRESSION_TAU), RegressionPatiencePolicy(2, REGRESSION_TAU),
                RegressionPatiencePolicy(3, 0.3)]
    f32 = trace.astype(np.float32)
    return [
        FullDepthPolicy(),
        PatiencePolicy(1),
        PatiencePolicy(2),
        EntropyPolicy(pick_threshold(entropy_scores(f32), 0.3, margin=MARGIN, low=0.0)),
        MaxProbPolicy(pick_threshold(max_prob_scores(f32), 0.7, margin=MARGIN, low=0.0, high=1.0)),
    ]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("classes", (1,) + CLASSES)
def test_chain_matches_replay(cuda_kernels, batch: int, classes: int, dtype: str) -> None:
    from kernels.loader import run_chain_device

    trace = make_trace(np.random.default_rng([7, batch, classes]), 6, batch, classes).astype(dtype)
    device_trace = cuda(trace)
    for policy in chain_policies(trace):
        got = run_chain_device(cuda_kernels, policy, device_trace)
        want = replay(policy, trace)
        np.testing.assert_array_equal(got.exit_layer, want.exit_layer, err_msg=f"{policy} {dtype}")
        np.testing.assert_array_equal(got.outputs, want.outputs.astype(np.float32), err_msg=f"{policy} {dtype}")
        assert got.remaining_per_layer == run_chain_reference(policy, trace).remaining_per_layer


def test_chain_with_a_large_batch(cuda_kernels) -> None:
    """More than 16 compaction tiles (4096 rows each) and more rows than gridDim.y allows."""
    from kernels.loader import run_chain_device

    trace = make_trace(np.random.default_rng(11), 5, 100_000, 3)
    for policy in (PatiencePolicy(1), FullDepthPolicy()):
        got = run_chain_device(cuda_kernels, policy, cuda(trace))
        want = replay(policy, trace)
        np.testing.assert_array_equal(got.exit_layer, want.exit_layer)
        np.testing.assert_array_equal(got.outputs, want.outputs)


@pytest.mark.parametrize("n_active", [0, 1, 7, 31, 32, 33, 4095, 4096, 4097, 100_000])
@pytest.mark.parametrize("done_rate", [0.0, 0.3, 0.97, 1.0])
def test_compact_matches_reference(cuda_kernels, n_active: int, done_rate: float) -> None:
    rng = np.random.default_rng([n_active, int(done_rate * 100)])
    total = n_active + 17
    done = (rng.random(total) < done_rate).astype(np.uint8)
    active_idx = rng.permutation(total)[:n_active].astype(np.int32)
    want = compact_reference(done, active_idx)

    out_idx = torch.full((n_active,), -5, dtype=torch.int32, device="cuda")
    keep_rows = torch.full((n_active,), -5, dtype=torch.int32, device="cuda")
    n_remaining = torch.full((1,), -5, dtype=torch.int32, device="cuda")
    cuda_kernels.compact(cuda(done), cuda(active_idx), out_idx, keep_rows, n_remaining)
    m = int(n_remaining.item())
    assert m == want.n_remaining
    np.testing.assert_array_equal(out_idx[:m].cpu().numpy(), want.active_idx)
    np.testing.assert_array_equal(keep_rows[:m].cpu().numpy(), want.keep_rows)
    assert (out_idx[m:] == -5).all().item()  # nothing written past n_remaining


def test_device_counts(cuda_kernels) -> None:
    """n_active_dev / n_rows_dev: the counts come from device memory, clamped to the capacity."""
    from kernels.loader import DeviceState

    rng = np.random.default_rng(5)
    state, active_idx, logits = random_step_case(rng, "patience", 300, 3, "float32")
    for count in (0, 123, 300, 10_000):
        want = state.copy()
        step_reference(KernelParams("patience", patience=1), logits, active_idx, want, layer=2, num_layers=4,
                       n_active_dev=count)
        dev_state = DeviceState.from_numpy(state, cuda_kernels.torch_device)
        count_dev = torch.tensor([count], dtype=torch.int32, device="cuda")
        cuda_kernels.patience_step(cuda(logits), cuda(active_idx), dev_state, layer=2, num_layers=4, patience=1,
                           n_active_dev=count_dev)
        got = dev_state.to_numpy()
        assert_states_equal(got, want, f"n_active_dev={count}")

        comp = compact_reference(want.done, active_idx, n_active_dev=count)
        out_idx = torch.empty(300, dtype=torch.int32, device="cuda")
        keep_rows = torch.empty(300, dtype=torch.int32, device="cuda")
        n_rem = torch.empty(1, dtype=torch.int32, device="cuda")
        cuda_kernels.compact(dev_state.done, cuda(active_idx), out_idx, keep_rows, n_rem, n_active_dev=count_dev)
        assert n_rem.item() == comp.n_remaining
        np.testing.assert_array_equal(keep_rows[: comp.n_remaining].cpu().numpy(), comp.keep_rows)

        hidden = torch.randn((300, 4, 8), device="cuda")
        out = torch.zeros((300, 4, 8), device="cuda")
        cuda_kernels.gather(hidden, keep_rows, out, n_rows_dev=n_rem)
        m = comp.n_remaining
        np.testing.assert_array_equal(out[:m].cpu().numpy(), gather_reference(hidden.cpu().numpy(), comp.keep_rows))
        assert (out[m:] == 0).all().item()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int64", "uint8"])
@pytest.mark.parametrize("shape", [(7, 5, 3), (4096, 16, 24), (1, 1, 1), (100_000, 1, 2), (3, 128, 768)])
@pytest.mark.parametrize("misaligned", [False, True])
def test_gather_matches_reference(cuda_kernels, dtype: str, shape: tuple[int, int, int], misaligned: bool) -> None:
    rng = np.random.default_rng([shape[0], shape[2]])
    tdtype = getattr(torch, dtype)
    full = (torch.randn((shape[0] + 1,) + shape[1:], device="cuda") * 100).to(tdtype)
    if dtype == "int64":
        full = full[..., 0].contiguous()  # an attention mask [n, S]
    src = full[1:] if misaligned else full[:-1]  # [1:] shifts the base address by one row
    keep = np.sort(rng.choice(shape[0], size=max(1, (2 * shape[0]) // 3), replace=False)).astype(np.int32)
    out = torch.empty((keep.size,) + tuple(src.shape[1:]), dtype=tdtype, device="cuda")
    cuda_kernels.gather(src, cuda(keep), out)
    want = gather_reference(src.view(torch.uint8).cpu().numpy() if dtype != "uint8" else src.cpu().numpy(), keep)
    got = out.view(torch.uint8).cpu().numpy() if dtype != "uint8" else out.cpu().numpy()
    np.testing.assert_array_equal(got, want)  # byte-exact copy


def test_launches_follow_torchs_current_stream(cuda_kernels) -> None:
    from kernels.loader import DeviceState

    logits = torch.randn((4096, 3), device="cuda")
    active = torch.arange(4096, dtype=torch.int32, device="cuda")
    state = DeviceState.fresh(4096, 3, cuda_kernels.torch_device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        assert cuda_kernels._stream().__cuda_stream__()[1] == side.cuda_stream
        cuda_kernels.full_step(logits, active, state, layer=2, num_layers=2)
        snapshot = state.done.clone()  # ordered after the kernel on the same stream
    side.synchronize()
    assert snapshot.sum().item() == 4096


def test_cubin_cache_is_reused(tmp_path: Path, cuda_kernels) -> None:
    from kernels.loader import ExitKernels

    first = ExitKernels(cache_dir=tmp_path)
    files = list(tmp_path.glob(f"*-{first.arch}.cubin"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = ExitKernels(cache_dir=tmp_path)
    assert list(tmp_path.glob("*.cubin")) == files and files[0].stat().st_mtime_ns == stamp
    assert second.arch == first.arch == cuda_kernels.arch
    assert os.path.getsize(files[0]) > 0
