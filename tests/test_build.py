"""Export + parity for every backbone, manifest contract, atomic builds, tampered builds."""

import json
import shutil

import numpy as np
import pytest

from exporter.build import BuildOptions, ParityError, build
from exporter.parity import check_parity, default_cases
from runtime.chain import OrtChainExecutor
from runtime.engines import OrtOptions
from runtime.manifest import ChecksumError, Manifest, ManifestError, load_manifest
from runtime.session import load
from runtime.tokenization import TextEncoder
from tests.conftest import make_checkpoint
from tests.tiny_configs import TINY_CONFIGS

QUIET = dict(progress=False, log=lambda _: None)


@pytest.mark.parametrize("backbone", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("pooling,pooler", [("mean", "per-exit"), ("cls", "shared")])
def test_parity_every_backbone(tmp_path, backbone, pooling, pooler):
    path, ckpt = make_checkpoint(tmp_path, backbone, pooling, pooler)
    manifest = build(path, tmp_path / "build", BuildOptions(), **QUIET)
    assert manifest.parity["passed"] is True
    assert manifest.parity["max_abs_error"] <= 1e-4
    assert len(manifest.parity["cases"]) >= 6
    assert manifest.num_layers == ckpt.model.num_layers
    shapes = {(c["batch"], c["seq"]) for c in manifest.parity["cases"]}
    assert len({b for b, _ in shapes}) >= 3 and len({s for _, s in shapes}) >= 3
    if backbone == "albert":
        # one shared block exported once, reused at every layer; exit heads per layer
        blocks = {s.block for s in manifest.steps}
        assert blocks == {"block_00"}
        assert all(s.exit == f"exit_{s.layer:02d}" for s in manifest.steps)
        assert manifest.steps[0].shares_block_with == tuple(range(2, manifest.num_layers + 1))
        assert not any(name.startswith("layer_") for name in manifest.graphs)
    else:
        assert len({s.block for s in manifest.steps}) == manifest.num_layers
    inputs = manifest.graphs[manifest.embeddings].input_names
    assert ("token_type_ids" in inputs) == (backbone != "distilbert")


def test_parity_check_detects_a_wrong_graph(tmp_path):
    path_a, ckpt_a = make_checkpoint(tmp_path, "bert", seed=0)
    (tmp_path / "other").mkdir()
    path_b, _ = make_checkpoint(tmp_path / "other", "bert", seed=5)
    build(path_b, tmp_path / "b", BuildOptions(), **QUIET)
    wrong = OrtChainExecutor.load(tmp_path / "b", load_manifest(tmp_path / "b"), OrtOptions())
    encoder = TextEncoder(ckpt_a.tokenizer.json, 32, ckpt_a.tokenizer.pad_id)
    report = check_parity(ckpt_a.model, wrong, default_cases(ckpt_a.model, encoder), 1e-4)
    assert not report.passed
    assert report.failures() and "exit 1" in report.failures()[0]
    assert "NO" in report.table()


def test_build_fails_loudly_on_parity_and_leaves_nothing(tmp_path, capsys):
    path, _ = make_checkpoint(tmp_path, "bert")
    with pytest.raises(ParityError, match="parity check failed"):
        build(path, tmp_path / "out", BuildOptions(parity_tolerance=0.0), progress=False)
    assert "| case |" in capsys.readouterr().out  # the parity table is printed
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_build_refuses_overwrite_without_force(tmp_path, bert_checkpoint):
    out = tmp_path / "b"
    build(bert_checkpoint[0], out, BuildOptions(), **QUIET)
    before = (out / "manifest.json").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        build(bert_checkpoint[0], out, BuildOptions(), **QUIET)
    assert (out / "manifest.json").read_text() == before
    # a failing forced rebuild keeps the old build intact
    with pytest.raises(ParityError):
        build(bert_checkpoint[0], out, BuildOptions(force=True, parity_tolerance=0.0), **QUIET)
    assert (out / "manifest.json").read_text() == before
    build(bert_checkpoint[0], out, BuildOptions(force=True), **QUIET)
    load_manifest(out)


def test_manifest_round_trip(bert_build):
    manifest = load_manifest(bert_build)
    data = json.loads((bert_build / "manifest.json").read_text())
    again = Manifest.from_dict(json.loads(manifest.to_json()))
    assert again == manifest
    assert data["schema_version"] == 1
    for key in ("backbone", "steps", "graphs", "task", "default_policy", "tokenizer", "build_options", "tool_versions"):
        assert key in data
    g = data["graphs"]["layer_01"]
    assert g["inputs"][0] == {"name": "hidden", "dtype": "float32", "shape": ["batch", "sequence", 32]}
    assert len(g["onnx"]["sha256"]) == 64
    assert data["build_options"]["opset"] >= 17


def _copy(build_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(build_dir, dst)
    return dst


def test_flipped_byte_in_onnx_is_a_checksum_error_naming_the_file(bert_build, tmp_path):
    dst = _copy(bert_build, tmp_path)
    target = dst / "layer_02.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="layer_02.onnx"):
        load(dst)


def test_missing_file_is_named(bert_build, tmp_path):
    dst = _copy(bert_build, tmp_path)
    (dst / "embeddings.onnx").unlink()
    with pytest.raises(ManifestError, match="embeddings.onnx.*missing"):
        load(dst)
    (dst / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="manifest.json is missing"):
        load(dst)


def test_unknown_schema_version(bert_build, tmp_path):
    dst = _copy(bert_build, tmp_path)
    data = json.loads((dst / "manifest.json").read_text())
    data["schema_version"] = 2
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="schema_version 2"):
        load(dst)
    (dst / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load(dst)


def test_manifest_inconsistency_detected(bert_build, tmp_path):
    dst = _copy(bert_build, tmp_path)
    data = json.loads((dst / "manifest.json").read_text())
    data["steps"][1]["block"] = "layer_99"
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="layer_99"):
        load(dst)


def test_graph_io_mismatch_detected(bert_build, tmp_path):
    dst = _copy(bert_build, tmp_path)
    data = json.loads((dst / "manifest.json").read_text())
    data["graphs"]["layer_01"]["inputs"][0]["name"] = "hidden_states"
    (dst / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="manifest declares inputs"):
        load(dst)


def test_fused_engines_and_unfused_build_agree(tmp_path, bert_checkpoint, bert_build):
    fused = load_manifest(bert_build)
    assert all(g.engine is not None and g.engine.file.endswith(".ort.onnx") for g in fused.graphs.values())
    assert fused.build_options["fused_ops"]["layer_01"].get("Attention") == 1
    plain = build(bert_checkpoint[0], tmp_path / "plain", BuildOptions(fuse=False), **QUIET)
    assert all(g.engine is None for g in plain.graphs.values())
    texts = ["a fine film", "the plot is thin but the performances are strong", "dull"]
    a = load(bert_build).predict(texts, trace=True)
    b = load(tmp_path / "plain").predict(texts, trace=True)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.layer_outputs, y.layer_outputs, atol=1e-5)
