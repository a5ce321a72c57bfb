"""The GPU path without a GPU: lazy imports, clear errors, the fp16 torch executor through the chain on CPU."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from runtime.gpu.deps import GpuUnavailableError  # noqa: E402

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the refusal path cannot run")


def test_imports_need_no_gpu_packages():
    code = (
        "import sys, runtime, exporter, runtime.gpu, runtime.gpu.chain, runtime.gpu.executors, runtime.gpu.graphs, "
        "runtime.gpu.tensorrt, runtime.gpu.ops, runtime.gpu.buffers, exporter.tensorrt_backend, exporter.backends, "
        "benchmarks.latency_gpu\n"
        "loaded = [m for m in ('tensorrt', 'cuda', 'cuda.core', 'cuda.bindings', 'onnxruntime.transformers') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@no_cuda
def test_torch_cuda_executor_refuses_without_cuda(bert_checkpoint):
    from runtime.gpu.executors import TorchCudaExecutor

    with pytest.raises(GpuUnavailableError, match="CUDA"):
        TorchCudaExecutor.load(bert_checkpoint[0])


@no_cuda
def test_graphs_refuse_without_cuda(bert_checkpoint):
    from runtime.gpu.executors import TorchDeviceExecutor
    from runtime.gpu.graphs import CudaGraphExecutor

    with pytest.raises(GpuUnavailableError, match="CUDA"):
        CudaGraphExecutor(TorchDeviceExecutor.load(bert_checkpoint[0], "cpu"))


def test_precision_is_checked(bert_checkpoint):
    from runtime.gpu.executors import TorchDeviceExecutor

    with pytest.raises(ValueError, match="precision"):
        TorchDeviceExecutor.load(bert_checkpoint[0], "cpu", precision="int8")


def test_fp16_executor_through_the_chain_on_cpu(bert_checkpoint):
    """Half-precision hidden states and fp16 logits flow through the buffers and the exit step."""
    from runtime.gpu.chain import GpuChain
    from runtime.gpu.executors import TorchDeviceExecutor
    from runtime.gpu.ops import ReferenceExitOps
    from runtime.policies import FullDepthPolicy, PatiencePolicy, replay
    from tests.test_gpu_chain import random_batch

    fp32 = TorchDeviceExecutor.load(bert_checkpoint[0], "cpu")
    fp16 = TorchDeviceExecutor.load(bert_checkpoint[0], "cpu", precision="fp16")
    assert fp16.hidden_dtype == torch.float16 and fp16.logits_dtype == torch.float16
    batch = random_batch(7, seed=8)
    chain16 = GpuChain(fp16, ReferenceExitOps(), capacity=7, max_seq=12)
    assert chain16.buffers.hidden_in.dtype == torch.float16
    full16 = chain16.run(batch, FullDepthPolicy())
    full32 = GpuChain(fp32, ReferenceExitOps(), capacity=7, max_seq=12).run(batch, FullDepthPolicy())
    np.testing.assert_allclose(full16.outputs, full32.outputs, rtol=0, atol=5e-2)

    # early exit in fp16 decides exactly as the policy on the fp16 executor's own trace
    ids, types, mask = (torch.from_numpy(a) for a in (batch.input_ids, batch.token_type_ids, batch.attention_mask))
    hidden = torch.empty(7, 12, fp16.hidden_size, dtype=torch.float16)
    fp16.embed(ids, types, hidden)
    trace = []
    for index in range(fp16.num_layers):
        out, logits = torch.empty_like(hidden), torch.empty(7, fp16.num_outputs, dtype=torch.float16)
        fp16.layer(index, hidden, mask, out, logits)
        trace.append(logits.float().numpy())
        hidden = out
    want = replay(PatiencePolicy(1), np.stack(trace))
    got = chain16.run(batch, PatiencePolicy(1))
    np.testing.assert_array_equal(got.exit_layer, want.exit_layer)
    np.testing.assert_allclose(got.outputs, want.outputs, rtol=0, atol=1e-3)
