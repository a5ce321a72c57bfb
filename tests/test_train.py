"""PABEE loss and a tiny training run through the CLI."""

import json

import pytest
import torch

from exporter.checkpoint import load_checkpoint
from exporter.cli import main as exporter_main
from exporter.train import _length_bucketed_batches, pabee_loss
from tests.tiny_configs import TINY_CONFIGS


def test_pabee_loss_weights_deeper_exits_more():
    labels = torch.tensor([0, 1])
    good = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    bad = -good
    ce_bad = torch.nn.functional.cross_entropy(bad, labels)
    ce_good = torch.nn.functional.cross_entropy(good, labels)
    # 3 exits, weights 1,2,3 / 6
    loss_first_wrong = pabee_loss([bad, good, good], labels, "classification")
    loss_last_wrong = pabee_loss([good, good, bad], labels, "classification")
    assert loss_first_wrong == pytest.approx(((1 * ce_bad + 5 * ce_good) / 6).item())
    assert loss_last_wrong == pytest.approx(((3 * ce_bad + 3 * ce_good) / 6).item())
    reg = pabee_loss([torch.tensor([[1.0]]), torch.tensor([[3.0]])], torch.tensor([1.0]), "regression")
    assert reg == pytest.approx((1 * 0.0 + 2 * 4.0) / 3)


def test_length_bucketing_covers_every_sample_once():
    import numpy as np

    lengths = np.random.default_rng(0).integers(2, 60, size=1003)
    batches = _length_bucketed_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1003))
    assert max(len(b) for b in batches) == 32


def test_train_cli_tiny_model(tmp_path, glue_dir, capsys):
    cfg = tmp_path / "bert.json"
    cfg.write_text(json.dumps(TINY_CONFIGS["bert"]))
    out = tmp_path / "model.pt"
    code = exporter_main([
        "train", "--task", "sst2", "--data-dir", str(glue_dir), "--backbone", str(cfg), "--max-steps", "12",
        "--max-train-samples", "400", "--max-eval-samples", "64", "--batch-size", "16", "--seed", "7",
        "--no-progress", "-o", str(out),
    ])
    assert code == 0
    text = capsys.readouterr().out
    assert "| exit | accuracy |" in text
    ckpt = load_checkpoint(out)
    meta = ckpt.metadata
    assert meta["train_steps"] == 12 and len(meta["dev_metrics_per_exit"]) == 3
    assert meta["train_config"]["seed"] == 7
    assert ckpt.model.head.pooling == "mean" and ckpt.model.head.pooler == "per-exit"
    # seeded: a second run gives identical weights
    out2 = tmp_path / "model2.pt"
    exporter_main([
        "train", "--task", "sst2", "--data-dir", str(glue_dir), "--backbone", str(cfg), "--max-steps", "12",
        "--max-train-samples", "400", "--max-eval-samples", "64", "--batch-size", "16", "--seed", "7",
        "--no-progress", "-o", str(out2),
    ])
    a, b = ckpt.model.state_dict(), load_checkpoint(out2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_cli_user_errors(tmp_path, capsys):
    code = exporter_main(["train", "--task", "sst2", "--data-dir", str(tmp_path), "-o", str(tmp_path / "m.pt")])
    assert code == 2
    assert "GLUE data not found" in capsys.readouterr().err
    bad_cfg = tmp_path / "c.json"
    bad_cfg.write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "SST-2").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "SST-2" / f"{split}.tsv").write_text("text\tlabel\nfine\t1\n")
    code = exporter_main(["train", "--task", "sst2", "--data-dir", str(tmp_path), "--backbone", str(bad_cfg),
                          "-o", str(tmp_path / "m.pt")])
    assert code == 2
    assert "model_type must be one of" in capsys.readouterr().err
