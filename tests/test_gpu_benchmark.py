"""benchmarks/latency_gpu.py without a GPU: the metric arithmetic, the config checks, the clean refusal."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.latency_gpu import VARIANTS, GpuLatencyConfig, format_gpu_table, summarize_batch


def test_summarize_batch_arithmetic():
    # 2 requests of 4 rows, 3 layers; per-request seconds per variant
    times = {"layers": [300e-6, 300e-6], "chain_full": [330e-6, 330e-6], "chain_full_nosync": [312e-6, 312e-6],
             "chain_early": [200e-6, 220e-6], "whole_graph": [250e-6, 250e-6]}
    exits = [np.array([1, 2, 3, 2]), np.array([3, 3, 1, 1])]  # 16 layers run of 24
    s = summarize_batch(times, num_layers=3, rows=[4, 4], early_exit_layers=exits, early_syncs=[3, 2],
                        early_rows_per_layer=[(4, 3, 1), (4, 2, 2)])
    assert s["exit_step_overhead_us"] == pytest.approx(10.0)  # (660 - 600) / (2 requests x 3 layers)
    assert s["exit_step_overhead_nosync_us"] == pytest.approx(4.0)
    assert s["chain_full_over_whole_graph"] == pytest.approx(660 / 500)
    assert s["layers_over_whole_graph"] == pytest.approx(600 / 500)
    assert s["mean_exit_layer"] == pytest.approx(2.0) and s["layer_speedup"] == pytest.approx(1.5)
    assert s["rows_run_speedup"] == pytest.approx(24 / 16)
    assert s["wallclock_speedup"] == pytest.approx(660 / 420)
    assert s["wallclock_speedup_vs_whole_graph"] == pytest.approx(500 / 420)
    assert s["wallclock_over_layer_speedup"] == pytest.approx((660 / 420) / 1.5)
    assert s["host_syncs_per_request"] == pytest.approx(2.5)
    assert s["median_us_per_request"]["chain_early"] == pytest.approx(210.0)
    table = format_gpu_table({"setup": {"device": "X", "executor": "torch"}, "policy": {"kind": "patience"},
                              "num_layers": 3, "batches": {"1": s}})
    assert "| 1 | 10.0 / 4.0 |" in table


def test_summarize_batch_needs_every_variant():
    times = {v: [1.0] for v in VARIANTS if v != "whole_graph"}
    with pytest.raises(ValueError, match="whole_graph"):
        summarize_batch(times, num_layers=2, rows=[1], early_exit_layers=[np.array([1])], early_syncs=[1],
                        early_rows_per_layer=[(1,)])


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        GpuLatencyConfig(tmp_path, executor="onnxruntime")
    with pytest.raises(ValueError, match="batch_sizes"):
        GpuLatencyConfig(tmp_path, batch_sizes=())


def test_latency_cuda_refuses_cleanly_without_a_gpu(bert_build, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the refusal path cannot run")
    from benchmarks.cli import main

    assert main(["latency", str(bert_build), "--device", "cuda", "--executor", "torch"]) == 2
    assert "CUDA" in capsys.readouterr().err
