"""Shared fixtures: tiny random-init multi-exit models and their builds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.tiny_configs import TINY_CONFIGS

GLUE_DIR = Path(os.environ.get("PABEE_GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"))

SST2 = ("sst2", "classification", ("negative", "positive"))
STSB = ("stsb", "regression", ())


def make_checkpoint(tmp: Path, backbone: str, pooling: str = "mean", pooler: str = "per-exit", task=SST2, seed: int = 0,
                    policy: dict | None = None):
    """A tiny random multi-exit model written as model.pt; returns (path, Checkpoint)."""
    from exporter.checkpoint import Checkpoint, default_policy_for, save_checkpoint
    from exporter.model import HeadConfig, TaskSpec
    from exporter.pretrained import model_from_backbone

    torch.manual_seed(seed)
    cfg_path = tmp / f"{backbone}.json"
    cfg_path.write_text(json.dumps(TINY_CONFIGS[backbone]))
    spec = TaskSpec(*task)
    model, tokenizer = model_from_backbone(cfg_path, spec, HeadConfig(pooling, pooler))
    _spread_exits(model, seed)
    ckpt = Checkpoint(model.eval(), tokenizer, policy or default_policy_for(spec, model.num_layers))
    path = tmp / f"{backbone}-{pooling}-{pooler}-{task[0]}.pt"
    save_checkpoint(ckpt, path)
    return path, ckpt


def _spread_exits(model, seed: int) -> None:
    """Random-init exits give nearly constant outputs; centre and scale each exit on random token
    batches so that exits disagree across inputs and layers (early and late exits both happen)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (64, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[32:, 6:] = 0
    with torch.no_grad():
        for clf in model.classifiers:
            clf.weight.copy_(torch.randn(clf.weight.shape, generator=g))
            clf.bias.zero_()
        outputs = model(ids, mask, torch.zeros_like(ids))
        for clf, out in zip(model.classifiers, outputs):
            scale = 2.0 / out.std(dim=0).clamp(min=1e-6)
            clf.weight.mul_(scale[:, None])
            clf.bias.copy_(-out.mean(dim=0) * scale)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def bert_checkpoint(tiny_dir):
    return make_checkpoint(tiny_dir, "bert")


@pytest.fixture(scope="session")
def bert_build(tiny_dir, bert_checkpoint) -> Path:
    from exporter.build import BuildOptions, build

    out = tiny_dir / "bert-build"
    build(bert_checkpoint[0], out, BuildOptions(), progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def stsb_checkpoint(tiny_dir):
    return make_checkpoint(tiny_dir, "bert", pooling="mean", pooler="shared", task=STSB, seed=1)


@pytest.fixture(scope="session")
def stsb_build(tiny_dir, stsb_checkpoint) -> Path:
    from exporter.build import BuildOptions, build

    out = tiny_dir / "stsb-build"
    build(stsb_checkpoint[0], out, BuildOptions(), progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not (GLUE_DIR / "SST-2" / "dev.tsv").exists():
        pytest.skip(f"GLUE data not found at {GLUE_DIR} (set PABEE_GLUE_DIR)")
    return GLUE_DIR


@pytest.fixture(scope="session")
def cuda_kernels(tmp_path_factory):
    """The real exit kernels (``kernels.loader.ExitKernels``); skips without a CUDA GPU or cuda-python."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU (torch.cuda.is_available() is False)")
    try:
        import cuda.core  # noqa: F401
    except ImportError:
        pytest.skip('cuda-python not installed (pip install "cuda-python[all]")')
    from kernels.loader import CudaPythonUnavailable, ExitKernels

    try:
        return ExitKernels(cache_dir=tmp_path_factory.mktemp("kernel-cache"))
    except CudaPythonUnavailable as exc:  # cuda.core present but NVRTC/bindings missing
        pytest.skip(f"cuda-python not installed completely: {exc}")
