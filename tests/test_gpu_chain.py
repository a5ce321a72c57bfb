"""The GPU chain's orchestration (runtime.gpu.chain) against runtime.chain.run_chain and replay.

CPU part: ``GpuChain`` runs unchanged on CPU tensors with ``TorchDeviceExecutor(device="cpu")``
and ``ReferenceExitOps`` (the NumPy model of the kernels, which writes POISON wherever the
kernels leave entries unspecified): buffer ping-pong, device-side counts between host checks
(``check_every``), compaction and gather bookkeeping, host-sync counting, buffer reuse.

GPU part (skipped without a CUDA GPU and cuda-python): the same comparisons with
``TorchCudaExecutor`` and the real exit kernels (``kernels.loader.ExitKernels``), with and
without per-layer CUDA graphs, plus the whole-model CUDA graph.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exporter.checkpoint import load_model_source  # noqa: E402
from exporter.reference import TorchExecutor  # noqa: E402
from kernels.testing import entropy_scores, max_prob_scores, pick_threshold  # noqa: E402
from runtime.chain import ChainResult, run_chain  # noqa: E402
from runtime.gpu.buffers import prefix  # noqa: E402
from runtime.gpu.chain import GpuChain, GpuChainResult, capacity_for, padded_seq, run_chain_gpu  # noqa: E402
from runtime.gpu.executors import TorchDeviceExecutor  # noqa: E402
from runtime.gpu.graphs import next_power_of_two, row_bucket  # noqa: E402
from runtime.gpu.ops import POISON, ReferenceExitOps  # noqa: E402
from runtime.policies import (  # noqa: E402
    EntropyPolicy,
    FullDepthPolicy,
    MaxProbPolicy,
    PatiencePolicy,
    RegressionPatiencePolicy,
    replay,
)
from runtime.tokenization import EncodedBatch  # noqa: E402
from tests.conftest import make_checkpoint  # noqa: E402

BATCHES = (1, 7, 32)
SEQ = 12
MARGIN = 1e-4  # entropy/max-prob thresholds sit at least this far from every score


def random_batch(batch: int, seq: int = SEQ, seed: int = 0) -> EncodedBatch:
    """Token ids with per-row lengths 2..seq (row 0 full), zero token types."""
    rng = np.random.default_rng(seed + 1000 * batch + seq)
    lengths = rng.integers(2, seq + 1, batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1000, 5000, (batch, seq)).astype(np.int64) * mask
    return EncodedBatch(ids, mask, np.zeros_like(ids), np.zeros(batch, dtype=bool))


def policy_for(kind: str, trace: np.ndarray):
    """A policy of ``kind`` whose thresholds are away from every score of ``trace``."""
    if kind == "full":
        return FullDepthPolicy()
    if kind.startswith("patience"):
        return PatiencePolicy(int(kind[-1]))
    if kind == "entropy":
        return EntropyPolicy(pick_threshold(entropy_scores(trace), 0.4, margin=MARGIN))
    if kind == "max-prob":
        return MaxProbPolicy(pick_threshold(max_prob_scores(trace), 0.5, margin=MARGIN, high=1.0))
    if kind == "regression":
        diffs = np.abs(np.diff(trace[:, :, 0].astype(np.float64), axis=0)).ravel()
        return RegressionPatiencePolicy(1, pick_threshold(diffs, 0.5, margin=MARGIN))
    raise ValueError(kind)


def assert_same(got: ChainResult, want: ChainResult, atol: float, what: str) -> None:
    np.testing.assert_array_equal(got.exit_layer, want.exit_layer, err_msg=f"{what}: exit layers")
    np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=atol, err_msg=f"{what}: outputs")


def expected_syncs(exit_layer: np.ndarray, num_layers: int, check_every: int) -> int:
    """Host checks after layers k, 2k, ... (< L) while rows remain, plus the final copy."""
    syncs = 1
    for layer in range(check_every, num_layers, check_every):
        syncs += 1
        if not (exit_layer > layer).any():
            break
    return syncs


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bert(bert_checkpoint):
    """(model.pt path, eager CPU reference executor, CPU device executor)."""
    path, _ = bert_checkpoint
    return path, TorchExecutor(load_model_source(path).model), TorchDeviceExecutor.load(path, "cpu")


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """ALBERT: one block shared by 4 layers, separate exit heads (more steps for check_every)."""
    path, _ = make_checkpoint(tmp_path_factory.mktemp("albert"), "albert", pooling="cls", pooler="shared")
    return path, TorchExecutor(load_model_source(path).model), TorchDeviceExecutor.load(path, "cpu")


@pytest.fixture(scope="module")
def stsb(stsb_checkpoint):
    path, _ = stsb_checkpoint
    return path, TorchExecutor(load_model_source(path).model), TorchDeviceExecutor.load(path, "cpu")


# --------------------------------------------------------------------------- pure helpers


def test_bucket_helpers():
    assert [next_power_of_two(n) for n in (1, 2, 3, 4, 5, 31, 32, 33)] == [1, 2, 4, 4, 8, 32, 32, 64]
    assert [row_bucket(n, 24) for n in (1, 3, 9, 17, 24)] == [1, 4, 16, 24, 24]
    with pytest.raises(ValueError, match="expected 1..24"):
        row_bucket(25, 24)
    with pytest.raises(ValueError, match="integer >= 1"):
        next_power_of_two(0)
    assert [padded_seq(s, 8, 20) for s in (1, 8, 9, 17, 20)] == [8, 8, 16, 20, 20]
    assert padded_seq(13, 1, 20) == 13
    with pytest.raises(ValueError, match="expected 1..20"):
        padded_seq(21, 8, 20)


def test_capacity_for_respects_an_engine_profile(bert):
    from types import SimpleNamespace

    assert capacity_for(bert[2], 32, 128) == (32, 128)  # no profile: as asked
    profiled = SimpleNamespace(rows_range=(1, 16), seq_range=(1, 64))  # what TensorRTExecutor exposes
    assert capacity_for(profiled, 32, 128) == (16, 64)
    assert capacity_for(SimpleNamespace(inner=profiled), 8, 32) == (8, 32)  # through a graph wrapper


def test_prefix_views_are_contiguous_and_shared():
    flat = torch.arange(24)
    view = prefix(flat, 2, 3, 2)
    assert view.is_contiguous() and view.shape == (2, 3, 2) and view.data_ptr() == flat.data_ptr()
    view[1, 2, 1] = -1
    assert flat[11] == -1
    with pytest.raises(ValueError, match=">= 30 elements"):
        prefix(flat, 5, 6)


def test_reference_compact_poisons_unspecified_entries():
    done = torch.tensor([0, 1, 0, 1, 0], dtype=torch.uint8)
    active = torch.tensor([4, 3, 1, 0], dtype=torch.int32)
    out, keep = torch.zeros(4, dtype=torch.int32), torch.zeros(4, dtype=torch.int32)
    count = torch.zeros(1, dtype=torch.int32)
    ReferenceExitOps().compact(done, active, out, keep, count)
    assert count.item() == 2
    assert out[:2].tolist() == [4, 0] and keep[:2].tolist() == [0, 3]
    assert out[2:].tolist() == [POISON, POISON] and keep[2:].tolist() == [POISON, POISON]
    # a device-side count smaller than the capacity: only those entries are looked at
    ReferenceExitOps().compact(done, active, out, keep, count, n_active_dev=torch.tensor([2], dtype=torch.int32))
    assert count.item() == 1 and out[0].item() == 4


# --------------------------------------------------------------------------- CPU orchestration


@pytest.mark.parametrize("batch_size", BATCHES)
@pytest.mark.parametrize("kind", ["patience1", "patience2", "entropy", "max-prob", "full"])
@pytest.mark.parametrize("check_every", [1, 2])
def test_cpu_chain_matches_run_chain(bert, kind, batch_size, check_every):
    _, reference, device_exec = bert
    batch = random_batch(batch_size)
    trace = run_chain(reference, batch, FullDepthPolicy(), trace=True).trace
    policy = policy_for(kind, trace)
    want = run_chain(reference, batch, policy)
    got = run_chain_gpu(device_exec, batch, policy, ReferenceExitOps(), check_every=check_every)
    assert isinstance(got, GpuChainResult) and isinstance(got, ChainResult)
    assert got.exit_layer.dtype == np.int64 and got.outputs.dtype == np.float32
    assert_same(got, want, 1e-5, f"{kind} batch {batch_size}")
    assert_same(got, replay(policy, trace), 1e-5, f"{kind} batch {batch_size} vs replay")
    assert got.host_syncs == expected_syncs(got.exit_layer, device_exec.num_layers, check_every)


@pytest.mark.parametrize("check_every", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["patience1", "entropy", "max-prob"])
def test_cpu_chain_shared_blocks_stale_counts(albert, kind, check_every):
    """Four layers: between host checks the kernels run on the device count, the engines on the stale one."""
    _, reference, device_exec = albert
    batch = random_batch(32, seed=3)
    trace = run_chain(reference, batch, FullDepthPolicy(), trace=True).trace
    policy = policy_for(kind, trace)
    got = run_chain_gpu(device_exec, batch, policy, ReferenceExitOps(), check_every=check_every)
    assert_same(got, run_chain(reference, batch, policy), 1e-5, f"albert {kind} k={check_every}")
    remaining = [int((got.exit_layer >= layer).sum()) for layer in range(1, len(got.rows_per_layer) + 1)]
    # rows run: the exact count right after a check, else the last count the host knows
    assert all(ran >= need for ran, need in zip(got.rows_per_layer, remaining))
    if check_every == 1:
        assert list(got.rows_per_layer) == remaining
    assert got.host_syncs == expected_syncs(got.exit_layer, device_exec.num_layers, check_every)


def test_cpu_chain_regression(stsb):
    _, reference, device_exec = stsb
    batch = random_batch(7, seed=5)
    trace = run_chain(reference, batch, RegressionPatiencePolicy(99, 1.0), trace=True).trace
    policy = policy_for("regression", trace)
    for check_every in (1, 2):
        got = run_chain_gpu(device_exec, batch, policy, ReferenceExitOps(), check_every=check_every)
        assert_same(got, run_chain(reference, batch, policy), 1e-5, f"regression k={check_every}")


def test_cpu_chain_reuses_buffers_and_pads_sequence(bert):
    """One GpuChain for several requests of different shapes; sequence bucketing changes nothing."""
    _, reference, device_exec = bert
    chain = GpuChain(device_exec, ReferenceExitOps(), capacity=32, max_seq=16, seq_multiple=8)
    policy = PatiencePolicy(1)
    for batch_size, seq, seed in ((32, 12, 0), (3, 5, 1), (32, 16, 2), (1, 9, 3), (7, 12, 4)):
        batch = random_batch(batch_size, seq, seed)
        assert_same(chain.run(batch, policy), run_chain(reference, batch, policy), 1e-5, f"{batch_size}x{seq}")
    with pytest.raises(ValueError, match=r"expected 1..32 rows"):
        chain.run(random_batch(33), policy)
    with pytest.raises(ValueError, match=r"expected 1..16 tokens"):
        chain.run(random_batch(2, 17), policy)
    with pytest.raises(ValueError, match="check_every"):
        chain.run(random_batch(2), policy, check_every=0)


def test_cpu_run_layers_is_full_depth_without_exit_ops(bert):
    _, reference, device_exec = bert
    batch = random_batch(7)
    trace = run_chain(reference, batch, FullDepthPolicy(), trace=True).trace
    chain = GpuChain(device_exec, ReferenceExitOps(), capacity=7, max_seq=SEQ)
    got = chain.run_layers(batch)
    assert (got.exit_layer == device_exec.num_layers).all() and got.host_syncs == 1
    np.testing.assert_allclose(got.outputs, trace[-1], rtol=0, atol=1e-5)


def test_stream_is_cuda_only(bert):
    with pytest.raises(ValueError, match="expected None"):
        GpuChain(bert[2], ReferenceExitOps(), capacity=2, max_seq=4, stream=object())


# --------------------------------------------------------------------------- GPU


@pytest.fixture(scope="module")
def bert_cuda(bert, cuda_kernels):
    from runtime.gpu.executors import TorchCudaExecutor

    return TorchCudaExecutor.load(bert[0])


GPU_ATOL = 1e-4  # CUDA vs CPU float32 (cuBLAS, no TF32 in torch's default matmul precision)
GPU_MARGIN = 1e-3  # thresholds this far from every CPU score: device rounding cannot flip a decision


@pytest.mark.gpu
@pytest.mark.parametrize("batch_size", BATCHES)
@pytest.mark.parametrize("kind", ["patience1", "patience2", "entropy", "max-prob", "full"])
@pytest.mark.parametrize("check_every", [1, 2])
def test_gpu_chain_matches_cpu_reference(bert, bert_cuda, cuda_kernels, kind, batch_size, check_every):
    _, reference, _ = bert
    batch = random_batch(batch_size, seed=11)
    trace = run_chain(reference, batch, FullDepthPolicy(), trace=True).trace
    if kind == "entropy":
        policy = EntropyPolicy(pick_threshold(entropy_scores(trace), 0.4, margin=GPU_MARGIN))
    elif kind == "max-prob":
        policy = MaxProbPolicy(pick_threshold(max_prob_scores(trace), 0.5, margin=GPU_MARGIN, high=1.0))
    else:
        policy = policy_for(kind, trace)
    want = run_chain(reference, batch, policy)
    got = run_chain_gpu(bert_cuda, batch, policy, cuda_kernels, check_every=check_every)
    assert_same(got, want, GPU_ATOL, f"cuda {kind} batch {batch_size}")
    assert got.host_syncs == expected_syncs(got.exit_layer, bert_cuda.num_layers, check_every)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["patience1", "entropy"])
def test_gpu_layer_graphs_match_eager(bert, bert_cuda, cuda_kernels, kind):
    from runtime.gpu.graphs import CudaGraphExecutor

    _, reference, _ = bert
    eager = GpuChain(bert_cuda, cuda_kernels, capacity=32, max_seq=16)
    graphed_exec = CudaGraphExecutor(bert_cuda)
    graphed = GpuChain(graphed_exec, cuda_kernels, capacity=32, max_seq=16, seq_multiple=8)
    for batch_size, seed in ((32, 0), (7, 1), (1, 2), (32, 3)):
        batch = random_batch(batch_size, seed=seed)
        trace = run_chain(reference, batch, FullDepthPolicy(), trace=True).trace
        policy = policy_for(kind, trace) if kind != "entropy" else EntropyPolicy(
            pick_threshold(entropy_scores(trace), 0.4, margin=GPU_MARGIN))
        a, b = eager.run(batch, policy), graphed.run(batch, policy)
        assert_same(b, a, GPU_ATOL, f"graphs {kind} batch {batch_size}")
        assert_same(b, run_chain(reference, batch, policy), GPU_ATOL, f"graphs vs CPU {kind} batch {batch_size}")
    assert graphed_exec.num_graphs > 0


@pytest.mark.gpu
def test_gpu_whole_model_graph_matches_layers(bert, bert_cuda, cuda_kernels):
    from runtime.gpu.graphs import WholeModelGraph

    chain = GpuChain(bert_cuda, cuda_kernels, capacity=8, max_seq=SEQ)
    batch = random_batch(8, seed=4)
    whole = WholeModelGraph(chain, batch)
    np.testing.assert_allclose(whole.run(batch), chain.run_layers(batch).outputs, rtol=0, atol=1e-5)
    other = random_batch(8, seed=5)  # same shape, new tokens: the graph reads the re-uploaded buffers
    np.testing.assert_allclose(whole.run(other), chain.run_layers(other).outputs, rtol=0, atol=1e-5)


@pytest.mark.gpu
def test_gpu_chain_on_explicit_stream(bert, bert_cuda, cuda_kernels):
    _, reference, _ = bert
    stream = torch.cuda.Stream()
    batch = random_batch(7, seed=6)
    got = run_chain_gpu(bert_cuda, batch, PatiencePolicy(1), cuda_kernels, stream=stream)
    assert_same(got, run_chain(reference, batch, PatiencePolicy(1)), GPU_ATOL, "explicit stream")
