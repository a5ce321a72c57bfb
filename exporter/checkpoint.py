"""``model.pt``: the exporter's self-contained input format, and importers into it.

A ``model.pt`` holds everything a build needs, so no hub is ever contacted:

=================  ==========================================================
``format``         ``"pabee-deploy/multi-exit-model"``
``format_version`` integer, currently 1
``backbone``       ``{"model_type": str, "config_json": str}`` (HF config)
``head``           pooling options (see ``exporter.model.HeadConfig``)
``task``           ``{"name", "kind", "labels"}``
``state_dict``     all weights of ``MultiExitModel`` (backbone + exits)
``tokenizer``      ``{"json": tokenizer.json text, "max_length", "pad_id"}``
``default_policy`` an exit-policy dict (``runtime.policies``)
``metadata``       free-form record (training arguments, dev metrics)
=================  ==========================================================

It is read with ``torch.load(..., weights_only=True)``: only tensors and plain
containers are accepted, so a pickle payload is refused, never executed.

``import_pabee_directory`` reads a Hugging Face ``save_pretrained`` folder in the
layout of the PABEE reference code (``bert.``/``albert.`` backbone weights, the
backbone pooler, ``classifiers.{i}.weight|bias``).
"""

from __future__ import annotations

import io
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from exporter.backbones import BACKBONES, get_backbone_spec
from exporter.model import HeadConfig, MultiExitModel, TaskSpec
from runtime.integrity import atomic_write_bytes
from runtime.policies import PolicyError, policy_from_dict

__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "TokenizerBundle",
    "default_policy_for",
    "import_pabee_directory",
    "load_checkpoint",
    "load_model_source",
    "save_checkpoint",
    "tokenizer_from_directory",
]

FORMAT_TAG = "pabee-deploy/multi-exit-model"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("backbone", "head", "task", "state_dict", "tokenizer", "default_policy")


class CheckpointError(ValueError):
    """A model file or folder is missing, corrupted, tampered with or of an unknown format."""


@dataclass(frozen=True)
class TokenizerBundle:
    """The tokenizer travelling with a model: HF ``tokenizer.json`` text and its limits."""

    json: str
    max_length: int
    pad_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"json": self.json, "max_length": self.max_length, "pad_id": self.pad_id}


@dataclass
class Checkpoint:
    model: MultiExitModel
    tokenizer: TokenizerBundle
    default_policy: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


def default_policy_for(task: TaskSpec, num_layers: int) -> dict[str, Any]:
    """A sensible starting policy: patience of about half the depth (PABEE used 6 of 12)."""
    patience = max(1, min(num_layers - 1, num_layers // 2))
    if task.kind == "regression":
        return {"kind": "regression-patience", "patience": patience, "tau": 0.1}
    return {"kind": "patience", "patience": patience}


# --------------------------------------------------------------------------- save / load
def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Write ``model.pt`` atomically."""
    model = ckpt.model
    policy_from_dict(ckpt.default_policy)  # refuse to write a policy we could not read back
    payload = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "backbone": {"model_type": model.model_type, "config_json": model.config.to_json_string()},
        "head": model.head.to_dict(),
        "task": model.task.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "tokenizer": ckpt.tokenizer.to_dict(),
        "default_policy": dict(ckpt.default_policy),
        "metadata": json.loads(json.dumps(ckpt.metadata)),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_weights_only(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only; a pickle payload is
    refused (never executed) and corruption becomes a ``CheckpointError`` naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain containers "
            f"(a pickle payload). Files are read with weights_only=True and nothing in them is executed. "
            f"Loader said: {str(exc).splitlines()[0]}"
        ) from None
    except Exception as exc:  # truncated zip, flipped bytes, not a torch file at all
        raise CheckpointError(f"cannot read {path} as a torch file (corrupted or not a torch file): {exc}") from None


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a model.pt file (use load_model_source for folders)")
    payload = _load_weights_only(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict payload; found {type(payload).__name__}")
    return payload


def _check_header(payload: dict[str, Any], path: Path) -> None:
    tag = payload.get("format")
    if tag != FORMAT_TAG:
        raise CheckpointError(f"{path}: expected format tag {FORMAT_TAG!r}; found {tag!r}")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported model.pt format_version {version!r}; this pabee-deploy reads version {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: model.pt is missing keys {missing}")


def _build_config(model_type: str, config_dict: dict[str, Any]):
    from transformers import AutoConfig

    config_dict = {k: v for k, v in config_dict.items() if k != "model_type"}
    return AutoConfig.for_model(model_type, **config_dict)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate ``model.pt``; the model is returned in eval mode."""
    path = Path(path)
    payload = _read_payload(path)
    _check_header(payload, path)
    try:
        model_type = payload["backbone"]["model_type"]
        get_backbone_spec(model_type)
        config = _build_config(model_type, json.loads(payload["backbone"]["config_json"]))
        head = HeadConfig.from_dict(payload["head"])
        task = TaskSpec.from_dict(payload["task"])
        tok = payload["tokenizer"]
        tokenizer = TokenizerBundle(json=str(tok["json"]), max_length=int(tok["max_length"]), pad_id=int(tok["pad_id"]))
        policy_from_dict(payload["default_policy"])
    except (KeyError, TypeError, ValueError, PolicyError) as exc:
        raise CheckpointError(f"{path}: malformed model.pt header: {exc}") from None
    model = MultiExitModel(model_type, config, head, task)
    _load_state(model, payload["state_dict"], str(path))
    model.eval()
    return Checkpoint(model, tokenizer, dict(payload["default_policy"]), dict(payload.get("metadata") or {}))


def _load_state(model: MultiExitModel, state: dict[str, torch.Tensor], origin: str) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{origin}: state_dict must map names to tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if wrong:
            parts.append(
                "wrong shape "
                + ", ".join(f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state[k].shape)}" for k in wrong[:4])
            )
        raise CheckpointError(f"{origin}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- HF folders
def tokenizer_from_directory(directory: str | os.PathLike, modelmax_positions: int) -> TokenizerBundle:
    """Read a HF tokenizer folder offline into a ``TokenizerBundle``."""
    directory = Path(directory)
    cfg_path = directory / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    tok_json_path = directory / "tokenizer.json"
    if tok_json_path.exists():
        text = tok_json_path.read_text()
    else:
        try:
            from transformers import AutoTokenizer

            hf_tok = AutoTokenizer.from_pretrained(str(directory), use_fast=True, local_files_only=True)
            text = hf_tok.backend_tokenizer.to_str()
        except Exception as exc:
            raise CheckpointError(
                f"no usable tokenizer in {directory}: expected tokenizer.json or files a fast tokenizer "
                f"can be built from (vocab.txt, merges.txt, spiece.model): {exc}"
            ) from None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(text)
    pad_token = tok_cfg.get("pad_token", "[PAD]")
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content", "[PAD]")
    pad_id = tokenizer.token_to_id(str(pad_token))
    if pad_id is None:
        raise CheckpointError(f"{directory}: pad token {pad_token!r} is not in the tokenizer vocabulary")
    declared = tok_cfg.get("model_max_length")
    max_length = modelmax_positions
    if isinstance(declared, int) and 0 < declared < max_length:
        max_length = declared
    return TokenizerBundle(json=text, max_length=int(max_length), pad_id=int(pad_id))


def max_positions(model_type: str, config) -> int:
    positions = int(getattr(config, "max_position_embeddings", 512))
    # RoBERTa offsets positions by padding_idx + 1.
    return positions - 2 if model_type == "roberta" else positions


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    safetensors_path = directory / "model.safetensors"
    bin_path = directory / "pytorch_model.bin"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors_path))
        except Exception as exc:
            raise CheckpointError(f"cannot read {safetensors_path}: {exc}") from None
    if bin_path.exists():
        return _load_weights_only(bin_path)
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def import_pabee_directory(
    directory: str | os.PathLike, task_name: str | None = None, tokenizer_dir: str | os.PathLike | None = None
) -> Checkpoint:
    """Convert a PABEE reference ``save_pretrained`` folder into a ``Checkpoint``.

    Expected weights: ``{prefix}.embeddings.*``, ``{prefix}.encoder.*``, the
    backbone pooler and ``classifiers.{i}.weight|bias`` for every layer, where
    ``prefix`` is ``bert`` or ``albert`` (any supported backbone works).
    """
    from transformers import AutoConfig

    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory}: not a Hugging Face model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"{directory}/config.json: {exc}") from None
    model_type = config.model_type
    if model_type not in BACKBONES:
        raise CheckpointError(f"{directory}: backbone {model_type!r} is not supported; supported: {sorted(BACKBONES)}")
    spec = get_backbone_spec(model_type)
    num_labels = int(getattr(config, "num_labels", 2))
    if num_labels == 1:
        task = TaskSpec(task_name or getattr(config, "finetuning_task", None) or "custom", "regression")
    else:
        id2label = getattr(config, "id2label", None) or {}
        labels = tuple(str(id2label.get(i, f"LABEL_{i}")) for i in range(num_labels))
        task = TaskSpec(task_name or getattr(config, "finetuning_task", None) or "custom", "classification", labels)

    weights = _read_weights(directory)
    prefix = spec.base_model_prefix + "."
    model = MultiExitModel(model_type, config, HeadConfig(pooling="cls", pooler="shared"), task)
    state: dict[str, torch.Tensor] = {}
    pooler_weight_keys = {f"{prefix}pooler.dense.weight", f"{prefix}pooler.weight"}  # BERT / ALBERT naming
    pooler_bias_keys = {f"{prefix}pooler.dense.bias", f"{prefix}pooler.bias"}
    for key, tensor in weights.items():
        if key in pooler_weight_keys:
            state["poolers.0.dense.weight"] = tensor
        elif key in pooler_bias_keys:
            state["poolers.0.dense.bias"] = tensor
        elif key.startswith(prefix):
            state["backbone." + key[len(prefix) :]] = tensor
        elif key.startswith("classifiers."):
            state[key] = tensor
        # anything else (e.g. an MLM head) is not part of a multi-exit model
    # Non-persistent buffers (position ids) are not in saved files: keep the model's own.
    for key, value in model.state_dict().items():
        if key not in state and key.endswith(("position_ids", "token_type_ids")):
            state[key] = value
    if not any(k.startswith("classifiers.") for k in state):
        raise CheckpointError(f"{directory}: no classifiers.{{i}} exit heads found; is this a PABEE checkpoint?")
    _load_state(model, state, str(directory))
    model.eval()
    tokenizer = tokenizer_from_directory(tokenizer_dir or directory, max_positions(model_type, config))
    meta = {"imported_from": str(directory.resolve()), "layout": "pabee-reference"}
    return Checkpoint(model, tokenizer, default_policy_for(task, model.num_layers), meta)


def load_model_source(path: str | os.PathLike) -> Checkpoint:
    """``model.pt`` file or a PABEE reference folder -> ``Checkpoint``."""
    path = Path(path)
    if path.is_dir():
        return import_pabee_directory(path)
    return load_checkpoint(path)
