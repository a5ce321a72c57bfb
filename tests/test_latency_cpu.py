"""The CPU latency benchmark runs end to end on a tiny build (no timing assertions)."""

import json
import math

from benchmarks.cli import main as benchmarks_main


def test_latency_command_writes_every_ratio(bert_build, glue_dir, tmp_path, capsys):
    out = tmp_path / "latency.json"
    code = benchmarks_main(["latency", str(bert_build), "--device", "cpu", "--threads", "1", "--data-dir", str(glue_dir),
                            "--n", "8", "--torch-n", "4", "--reps", "1", "--batch-size", "4", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    for key in ("chain_full_over_fused", "wallclock_over_layer_speedup", "speedup_vs_torch_reference",
                "batched_throughput_over_ideal"):
        assert math.isfinite(result[key]) and result[key] > 0
        assert key in result["targets"]
    assert result["details"]["fused_ops_whole_model"].get("Attention", 0) == 3  # one per layer of the tiny BERT
    assert "| `chain_full_over_fused` |" in capsys.readouterr().out


def test_interleaved_medians_alternates_in_blocks():
    from benchmarks.timing import interleaved_medians

    calls = []
    out = interleaved_medians({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                              n=5, reps=1, block=2)
    assert calls == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("a", 2), ("a", 3), ("b", 2), ("b", 3), ("a", 4), ("b", 4)]
    assert set(out) == {"a", "b"} and len(out["a"]) == 5
