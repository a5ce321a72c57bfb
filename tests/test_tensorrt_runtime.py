"""TensorRTExecutor: clear refusal without TensorRT; on a TensorRT + CUDA machine, the engines' GPU chain
against the eager PyTorch reference (skipped elsewhere with the reason)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from runtime.gpu.deps import TensorRTUnavailableError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: the refusal path cannot run")
def test_executor_refuses_without_tensorrt(bert_build):
    from runtime.gpu.tensorrt import TensorRTExecutor

    with pytest.raises(TensorRTUnavailableError, match="tensorrt not installed"):
        TensorRTExecutor(bert_build)


@pytest.fixture(scope="module")
def trt_build(tmp_path_factory, bert_checkpoint):
    if not HAS_TENSORRT:
        pytest.skip("tensorrt not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    from exporter.build import BuildOptions, build

    out = tmp_path_factory.mktemp("trt") / "bert-trt"
    build(bert_checkpoint[0], out, BuildOptions(backend="tensorrt", trt_max_batch=32, trt_opt_batch=8),
          progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def trt_kernels(trt_build):
    pytest.importorskip("cuda.core", reason='cuda-python not installed (pip install "cuda-python[all]")')
    from kernels.loader import ExitKernels

    return ExitKernels()


@pytest.mark.gpu
def test_manifest_records_engines(trt_build):
    from runtime.manifest import load_manifest

    manifest = load_manifest(trt_build)  # verifies every engine's sha256 too
    assert manifest.backend == "tensorrt"
    assert all(g.engine is not None and g.engine.file.endswith(".plan") for g in manifest.graphs.values())
    assert manifest.build_options["tensorrt"]["profile"]["batch"] == [1, 8, 32]


@pytest.mark.gpu
@pytest.mark.parametrize("batch_size", [1, 7, 32])
@pytest.mark.parametrize("kind", ["patience1", "patience2", "full"])
@pytest.mark.parametrize("layer_graphs", [False, True])
def test_tensorrt_chain_matches_reference(trt_build, trt_kernels, bert_checkpoint, kind, batch_size, layer_graphs):
    from exporter.checkpoint import load_model_source
    from exporter.reference import TorchExecutor
    from runtime.chain import run_chain
    from runtime.gpu.chain import GpuChain
    from runtime.gpu.graphs import CudaGraphExecutor
    from runtime.gpu.tensorrt import TensorRTExecutor
    from runtime.policies import FullDepthPolicy, PatiencePolicy
    from tests.test_gpu_chain import random_batch

    executor = TensorRTExecutor(trt_build)
    if layer_graphs:
        executor = CudaGraphExecutor(executor)
    chain = GpuChain(executor, trt_kernels, capacity=32, max_seq=16)
    reference = TorchExecutor(load_model_source(bert_checkpoint[0]).model)
    policy = FullDepthPolicy() if kind == "full" else PatiencePolicy(int(kind[-1]))
    batch = random_batch(batch_size, seed=21)
    got, want = chain.run(batch, policy), run_chain(reference, batch, policy)
    np.testing.assert_array_equal(got.exit_layer, want.exit_layer)
    np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=1e-3)
