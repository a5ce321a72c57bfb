"""Per-architecture export specs: how each supported encoder splits into steps.

Every supported backbone is described by one small ``BackboneSpec``: how to build
the Hugging Face base model, what its embeddings step computes, which module runs
at each layer, and which layers share one block (ALBERT). Generic code (model,
export, reference) never special-cases an architecture; it asks the spec.

Masking is done here, once, for every architecture: layers receive the 2-D
integer attention mask and turn it into the additive float mask that Hugging
Face's eager attention adds to the scores (``0`` for kept keys, the dtype's
minimum for padding keys), broadcast over heads and queries. Building it inside
each layer graph keeps the ONNX inputs to the 2-D mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = ["BACKBONES", "BackboneSpec", "UnsupportedBackboneError", "additive_mask", "get_backbone_spec"]


class UnsupportedBackboneError(ValueError):
    """The model type has no export spec."""


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] int mask (1 = token, 0 = padding) -> [B, 1, S, S] additive float mask.

    Values are exactly those of Hugging Face's eager mask: 0 for kept keys and
    ``finfo(dtype).min`` for padding keys. It is written as expand -> invert ->
    masked_fill (the classic ``_prepare_4d_attention_mask`` form) because that
    is the pattern ONNX Runtime's transformer optimizer recognises when it fuses
    a layer's attention into one ``Attention`` op.
    """
    batch, seq = attention_mask.shape
    expanded = attention_mask[:, None, None, :].expand(batch, 1, seq, seq).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def _unwrap(output: torch.Tensor | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


@dataclass(frozen=True)
class BackboneSpec:
    """How one Hugging Face encoder architecture maps onto embeddings + per-layer blocks."""

    model_type: str
    base_model_prefix: str  # state-dict prefix in HF task models ("bert." in PABEE checkpoints)
    uses_token_types: bool
    has_pooler: bool  # the pretrained base model carries a dense+tanh pooler we can initialise from
    model_class: Callable[[], type]  # lazy: transformers import happens on first use
    _embed: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
    _blocks: Callable[[nn.Module], list[nn.Module]]
    _block_of_layer: Callable[[nn.Module, int], int]

    def build(self, config, pretrained_dir: str | None = None) -> nn.Module:
        """The base model (no task head), eager attention, from a directory or random init."""
        cls = self.model_class()
        kwargs = {"add_pooling_layer": True} if self.has_pooler else {}
        config._attn_implementation = "eager"
        if pretrained_dir is not None:
            return cls.from_pretrained(pretrained_dir, config=config, local_files_only=True, **kwargs)
        return cls(config, **kwargs)

    def embed(self, model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """Token ids -> hidden states entering layer 1 (includes ALBERT/ELECTRA projections)."""
        return self._embed(model, input_ids, token_type_ids if self.uses_token_types else None)

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The distinct layer blocks (one per layer, except ALBERT: one per hidden group)."""
        return self._blocks(model)

    def block_of_layer(self, model: nn.Module, layer: int) -> int:
        """Index into ``blocks`` of the block that 0-based ``layer`` runs."""
        return self._block_of_layer(model, layer)

    def run_block(self, block: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _unwrap(block(hidden, additive_mask(attention_mask, hidden.dtype)))

    def pooler_weights(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pretrained pooler's (weight, bias), if the architecture has one."""
        pooler = getattr(model, "pooler", None)
        if pooler is None:
            return None
        dense = pooler.dense if hasattr(pooler, "dense") else pooler
        return dense.weight.detach().clone(), dense.bias.detach().clone()


def _lazy(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


def _bert_like_embed(model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    return model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)


def _electra_embed(model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    if hasattr(model, "embeddings_project"):
        hidden = model.embeddings_project(hidden)
    return hidden


def _albert_embed(model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    return model.encoder.embedding_hidden_mapping_in(hidden)


def _distilbert_embed(model: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    return model.embeddings(input_ids)


def _one_block_per_layer(layers_attr: Callable[[nn.Module], nn.ModuleList]):
    return (lambda m: list(layers_attr(m))), (lambda m, i: i)


def _albert_group_of_layer(model: nn.Module, layer: int) -> int:
    cfg = model.config
    return int(layer / (cfg.num_hidden_layers / cfg.num_hidden_groups))


_encoder_layers = _one_block_per_layer(lambda m: m.encoder.layer)
_distil_layers = _one_block_per_layer(lambda m: m.transformer.layer)

BACKBONES: dict[str, BackboneSpec] = {
    spec.model_type: spec
    for spec in (
        BackboneSpec("bert", "bert", True, True, _lazy("transformers", "BertModel"), _bert_like_embed, *_encoder_layers),
        BackboneSpec(
            "roberta", "roberta", True, True, _lazy("transformers", "RobertaModel"), _bert_like_embed, *_encoder_layers
        ),
        BackboneSpec(
            "electra", "electra", True, False, _lazy("transformers", "ElectraModel"), _electra_embed, *_encoder_layers
        ),
        BackboneSpec(
            "distilbert",
            "distilbert",
            False,
            False,
            _lazy("transformers", "DistilBertModel"),
            _distilbert_embed,
            *_distil_layers,
        ),
        BackboneSpec(
            "albert",
            "albert",
            True,
            True,
            _lazy("transformers", "AlbertModel"),
            _albert_embed,
            lambda m: list(m.encoder.albert_layer_groups),
            _albert_group_of_layer,
        ),
    )
}


def get_backbone_spec(model_type: str) -> BackboneSpec:
    if model_type not in BACKBONES:
        raise UnsupportedBackboneError(
            f"unsupported backbone model_type {model_type!r}; supported: {sorted(BACKBONES)}"
        )
    return BACKBONES[model_type]
