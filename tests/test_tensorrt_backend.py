"""The tensorrt backend: refusal without TensorRT, build flags, optimisation profiles, the fp16 ONNX variant.

Everything except the engine build itself runs on CPU: the fp16 variants are checked with
ONNX Runtime against the fp32 graphs. Engine builds are skipped without ``tensorrt`` (and a GPU).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from exporter.backends import BackendUnavailableError, EngineContext, build_engines
from exporter.build import BuildOptions
from exporter.cli import main as exporter_main
from exporter.tensorrt_backend import (
    Profile,
    TensorRTSettings,
    engine_file,
    fp16_variant,
    profile_shapes,
    settings_record,
)
from runtime.manifest import BuildError, TensorSpec, load_manifest

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_no_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: the refusal path cannot run")


# --------------------------------------------------------------------------- refusal without TensorRT


@needs_no_tensorrt
def test_cli_refuses_tensorrt_before_writing_anything(tmp_path, bert_checkpoint, capsys):
    out = tmp_path / "b"
    code = exporter_main(["build", str(bert_checkpoint[0]), "-o", str(out), "--backend", "tensorrt",
                          "--precision", "fp16", "--max-batch", "8", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tensorrt" in err.lower() and "--backend onnxruntime" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary build folder left behind either


@needs_no_tensorrt
def test_backend_refuses_without_tensorrt(tmp_path):
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        build_engines("tensorrt", tmp_path, {}, EngineContext(num_heads=4, hidden_size=32, max_seq_len=16))


def test_cli_tensorrt_flags_need_the_tensorrt_backend(tmp_path, bert_checkpoint, capsys):
    for flags in (["--max-batch", "8"], ["--precision", "fp16"], ["--timing-cache", str(tmp_path / "c")]):
        code = exporter_main(["build", str(bert_checkpoint[0]), "-o", str(tmp_path / "b"), "--no-progress", *flags])
        assert code == 2
        err = capsys.readouterr().err
        assert flags[0] in err and "only with --backend tensorrt" in err
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- settings and profiles


def test_settings_defaults_and_profile():
    settings = TensorRTSettings()
    assert settings.precision == "fp32"
    profile = settings.profile(build_max_seq=128)
    assert profile == Profile(batch=(1, 32, 32), seq=(1, 128, 128))
    custom = TensorRTSettings(min_batch=2, opt_batch=8, max_batch=64, min_seq=4, opt_seq=32, max_seq=64)
    assert custom.profile(128) == Profile(batch=(2, 8, 64), seq=(4, 32, 64))
    assert TensorRTSettings(opt_seq=16).profile(64).seq == (1, 16, 64)


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "bf16"}, "precision"),
    ({"min_batch": 4, "opt_batch": 2}, "batch profile"),
    ({"opt_batch": 64, "max_batch": 32}, "batch profile"),
    ({"min_seq": 8, "opt_seq": 4}, "sequence profile"),
    ({"max_batch": 0}, "max batch"),
    ({"workspace_mib": -1}, "workspace"),
    ({"min_batch": True}, "min batch"),
])
def test_settings_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorRTSettings(**kwargs)


def test_profile_beyond_the_build_is_refused():
    with pytest.raises(ValueError, match="max_seq_len 64"):
        TensorRTSettings(max_seq=128).profile(64)
    with pytest.raises(ValueError, match="sequence profile"):
        TensorRTSettings(opt_seq=100).profile(64)  # opt above the build's maximum


def test_profile_shapes_from_named_axes():
    profile = Profile(batch=(1, 8, 32), seq=(2, 64, 128))
    hidden = TensorSpec("hidden", "float32", ("batch", "sequence", 384))
    assert profile_shapes(hidden, profile) == ((1, 2, 384), (8, 64, 384), (32, 128, 384))
    mask = TensorSpec("attention_mask", "int64", ("batch", "sequence"))
    assert profile_shapes(mask, profile) == ((1, 2), (8, 64), (32, 128))
    with pytest.raises(BuildError, match="'width'"):
        profile_shapes(TensorSpec("x", "float32", ("batch", "width")), profile)


def test_settings_from_build_options_and_record():
    options = BuildOptions(backend="tensorrt", max_seq_len=64, precision="fp16", trt_max_batch=16, trt_opt_batch=4,
                           trt_opt_seq=32, trt_timing_cache="/tmp/x.cache")
    settings = TensorRTSettings.from_build_options(options)
    assert (settings.precision, settings.min_batch, settings.opt_batch, settings.max_batch) == ("fp16", 1, 4, 16)
    assert (settings.opt_seq, settings.max_seq, settings.timing_cache) == (32, None, "/tmp/x.cache")
    record = settings_record(settings, 64)
    assert record["profile"] == {"batch": [1, 4, 16], "sequence": [1, 32, 64]} and record["precision"] == "fp16"
    assert engine_file("layer_01", "fp16") == "layer_01.fp16.plan"
    assert TensorRTSettings.from_build_options(BuildOptions()) == TensorRTSettings()


# --------------------------------------------------------------------------- fp16 ONNX variant


def _feeds(spec, rng, batch=5, seq=11, hidden=32):
    feeds = {}
    for t in spec.inputs:
        shape = [batch if d == "batch" else seq if d == "sequence" else int(d) for d in t.shape]
        if t.name == "attention_mask":
            mask = np.ones(shape, dtype=np.int64)
            mask[1, 4:] = 0
            mask[3, 7:] = 0
            feeds[t.name] = mask
        elif t.name == "input_ids":
            feeds[t.name] = rng.integers(1000, 5000, shape).astype(np.int64)
        elif t.name == "token_type_ids":
            feeds[t.name] = np.zeros(shape, dtype=np.int64)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def test_fp16_variant_matches_fp32_with_onnxruntime(bert_build, tmp_path):
    import onnx
    import onnxruntime as ort

    manifest = load_manifest(bert_build)
    rng = np.random.default_rng(0)
    for name, spec in manifest.graphs.items():
        src, dst = bert_build / spec.onnx.file, tmp_path / f"{name}.fp16.onnx"
        fp16_variant(src, dst)
        model = onnx.load(str(dst))
        io_types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)}
        for t in (*spec.inputs, *spec.outputs):  # the I/O contract of the manifest is unchanged
            want = onnx.TensorProto.FLOAT if t.dtype == "float32" else onnx.TensorProto.INT64
            assert io_types[t.name] == want, f"{name}.{t.name}"
        fp16_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
        assert fp16_weights, f"{name}: expected fp16 weights in the variant"
        norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
        assert norms, f"{name}: expected LayerNormalization nodes"

        def run(path, feeds):
            return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)

        feeds = _feeds(spec, rng)
        for out, want, got in zip(spec.output_names, run(src, feeds), run(dst, feeds)):
            assert got.dtype == np.float32
            err = float(np.max(np.abs(got - want)))
            assert err <= 1e-2 * max(1.0, float(np.max(np.abs(want)))), f"{name}.{out}: fp16 error {err}"


def test_fp16_variant_rejects_a_broken_graph(tmp_path):
    with pytest.raises(Exception):
        fp16_variant(tmp_path / "missing.onnx", tmp_path / "out.onnx")


# --------------------------------------------------------------------------- engine build (TensorRT machines)


def test_tensorrt_engine_build(bert_build, tmp_path):
    if not HAS_TENSORRT:
        pytest.skip("tensorrt not installed")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (TensorRT builds need one)")
    import shutil

    from exporter.tensorrt_backend import TIMING_CACHE_FILE, build_tensorrt_engines

    build_dir = tmp_path / "b"
    shutil.copytree(bert_build, build_dir)
    manifest = load_manifest(build_dir)
    for precision in ("fp32", "fp16"):
        settings = TensorRTSettings(precision=precision, max_batch=8, opt_batch=4)
        engines = build_tensorrt_engines(build_dir, dict(manifest.graphs), settings, manifest.max_seq_len)
        assert sorted(engines) == sorted(manifest.graphs)
        for name, ref in engines.items():
            assert ref.file == engine_file(name, precision) and (build_dir / ref.file).stat().st_size > 0
        assert (build_dir / TIMING_CACHE_FILE).stat().st_size > 0
