"""model.pt format, refusal of pickle payloads and tampering, PABEE reference import."""

import json
import shutil

import pytest
import torch

from exporter.checkpoint import (
    FORMAT_TAG,
    CheckpointError,
    import_pabee_directory,
    load_checkpoint,
    load_model_source,
)
from exporter.pretrained import default_backbone_dir
from tests.conftest import make_checkpoint
from tests.tiny_configs import TINY_CONFIGS


def _inputs():
    ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102, 0], [101, 6659, 102, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    return ids, mask, torch.zeros_like(ids)


def test_model_pt_round_trip(tmp_path):
    path, ckpt = make_checkpoint(tmp_path, "bert")
    loaded = load_checkpoint(path)
    assert loaded.model.task == ckpt.model.task
    assert loaded.model.head == ckpt.model.head
    assert loaded.tokenizer == ckpt.tokenizer
    assert loaded.default_policy == ckpt.default_policy
    ids, mask, types = _inputs()
    with torch.no_grad():
        for a, b in zip(loaded.model(ids, mask, types), ckpt.model(ids, mask, types)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_TAG, "format_version": 1, "payload": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="pickle payload"):
        load_checkpoint(evil)
    assert not marker.exists(), "the payload ran"


def test_flipped_bytes_and_truncation_are_clear_errors(tmp_path):
    path, _ = make_checkpoint(tmp_path, "bert")
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    # flip a byte in the zip directory at the end
    data[-30] ^= 0xFF
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(flipped)


def test_unknown_format_version_and_tag(tmp_path):
    path, _ = make_checkpoint(tmp_path, "bert")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(tmp_path / "v99.pt")
    payload["format_version"] = 1
    payload["format"] = "something-else"
    torch.save(payload, tmp_path / "tag.pt")
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(tmp_path / "tag.pt")


def test_missing_file_and_wrong_weights(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path, _ = make_checkpoint(tmp_path, "bert")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["classifiers.0.weight"]
    payload["state_dict"]["classifiers.1.bias"] = torch.zeros(7)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"missing \['classifiers.0.weight'\].*wrong shape classifiers.1.bias"):
        load_checkpoint(tmp_path / "bad.pt")


def _write_pabee_dir(tmp_path, model_type: str, num_labels: int = 2):
    """A folder as the PABEE reference code's save_pretrained writes it (pytorch_model.bin, vocab.txt)."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(3)
    cfg = dict(TINY_CONFIGS[model_type], num_labels=num_labels,
               architectures=[f"{model_type.capitalize()}ForSequenceClassificationWithPabee"])
    config = AutoConfig.for_model(**cfg)
    backbone = AutoModel.from_config(config)
    state = {f"{model_type}.{k}": v for k, v in backbone.state_dict().items()}
    for i in range(config.num_hidden_layers):
        state[f"classifiers.{i}.weight"] = torch.randn(num_labels, config.hidden_size)
        state[f"classifiers.{i}.bias"] = torch.randn(num_labels)
    folder = tmp_path / f"pabee-{model_type}"
    folder.mkdir()
    config.save_pretrained(folder)
    torch.save(state, folder / "pytorch_model.bin")
    src = default_backbone_dir()
    shutil.copy(src / "vocab.txt", folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer",
                                                              "model_max_length": 64}))
    return folder, backbone.eval(), state


@pytest.mark.parametrize("model_type", ["bert", "albert"])
def test_pabee_reference_checkpoint_import(tmp_path, model_type):
    folder, backbone, state = _write_pabee_dir(tmp_path, model_type)
    ckpt = import_pabee_directory(folder)
    assert ckpt.model.head.pooling == "cls" and ckpt.model.head.pooler == "shared"
    assert ckpt.model.task.kind == "classification"
    ids, mask, types = _inputs()
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True).hidden_states
        ours = ckpt.model(ids, mask, types)
        pooler = backbone.pooler
        for i, out in enumerate(ours):
            cls = hidden[i + 1][:, 0]
            pooled = torch.tanh(pooler.dense(cls)) if model_type == "bert" else torch.tanh(pooler(cls))
            expected = pooled @ state[f"classifiers.{i}.weight"].T + state[f"classifiers.{i}.bias"]
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # the tokenizer came from vocab.txt (converted to a fast tokenizer), capped by tokenizer_config
    assert ckpt.tokenizer.max_length == 64 and ckpt.tokenizer.pad_id == 0
    assert load_model_source(folder).model.num_layers == ckpt.model.num_layers


def test_pabee_import_rejects_folder_without_exit_heads(tmp_path):
    folder, _, state = _write_pabee_dir(tmp_path, "bert")
    torch.save({k: v for k, v in state.items() if not k.startswith("classifiers.")}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="exit heads"):
        import_pabee_directory(folder)


def test_pabee_import_regression(tmp_path):
    folder, _, _ = _write_pabee_dir(tmp_path, "bert", num_labels=1)
    ckpt = import_pabee_directory(folder)
    assert ckpt.model.task.kind == "regression"
    assert ckpt.default_policy["kind"] == "regression-patience"


def test_pabee_folder_with_pickle_payload_is_refused(tmp_path):
    folder, _, _ = _write_pabee_dir(tmp_path, "bert")
    marker = tmp_path / "pwned"
    torch.save({"classifiers.0.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle payload"):
        import_pabee_directory(folder)
    assert not marker.exists(), "the payload ran"
