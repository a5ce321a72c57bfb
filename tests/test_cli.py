"""The thin CLIs: runtime predict/evaluate, exporter build errors, --help without heavy work."""

import json
import subprocess
import sys

import pytest

from exporter.cli import main as exporter_main
from runtime.cli import main as runtime_main


def test_predict_prints_one_json_object_per_line(bert_build, capsys):
    assert runtime_main(["predict", str(bert_build), "a fine film", "a dull film", "--patience", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        obj = json.loads(line)
        assert obj["label"] in ("negative", "positive") and 1 <= obj["exit_layer"] <= 3


def test_predict_pairs_and_errors(stsb_build, capsys):
    assert runtime_main(["predict", str(stsb_build), "--pair", "a man plays", "a man is playing",
                         "--patience", "1", "--tau", "0.5"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert isinstance(obj["value"], float)
    assert runtime_main(["predict", str(stsb_build), "--pair", "odd"]) == 2
    assert "even number" in capsys.readouterr().err
    assert runtime_main(["predict", str(stsb_build), "x", "--patience", "1", "--entropy", "0.2"]) == 2
    assert "choose one exit policy" in capsys.readouterr().err


def test_predict_empty_text_and_missing_build(bert_build, tmp_path, capsys):
    assert runtime_main(["predict", str(bert_build), ""]) == 2
    assert "empty text" in capsys.readouterr().err
    assert runtime_main(["predict", str(tmp_path / "nope"), "x"]) == 2
    assert "build folder not found" in capsys.readouterr().err


def test_evaluate_json_with_reference(bert_build, glue_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = runtime_main(["evaluate", str(bert_build), "--task", "sst2", "--data-dir", str(glue_dir), "--patience", "1",
                         "--max-samples", "40", "--batch-size", "8", "--compare-reference", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("metric", "mean_exit_layer", "layer_speedup", "reference_mismatches"):
        assert key in report
    assert report["reference_mismatches"] == 0
    assert report["layer_speedup"] == pytest.approx(3 / report["mean_exit_layer"])
    assert sum(report["exit_histogram"]) == 40


def test_evaluate_wrong_task(bert_build, glue_dir, capsys):
    assert runtime_main(["evaluate", str(bert_build), "--task", "stsb", "--data-dir", str(glue_dir)]) == 2
    assert "trained for task 'sst2'" in capsys.readouterr().err


def test_build_cli_errors(tmp_path, bert_checkpoint, capsys):
    assert exporter_main(["build", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "b")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert exporter_main(["build", str(bert_checkpoint[0]), "-o", str(tmp_path / "b"), "--backend", "tensorrt",
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err.lower()
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("module", ["exporter", "runtime", "benchmarks"])
def test_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage" in out.stdout
