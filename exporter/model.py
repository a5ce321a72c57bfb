"""The multi-exit model: a Hugging Face encoder backbone plus one exit head per layer.

Layout follows PABEE (Zhou et al., 2020): after every layer the hidden states are
pooled, passed through a dense+tanh pooler, dropout and a per-layer linear
classifier (``classifiers[i]``). The pooling is a recorded model option because
it decides whether shallow exits are useful:

* ``pooling``: ``cls`` (first token, as PABEE) or ``mean`` (masked mean over
  real tokens, as sentence-transformers models such as all-MiniLM-L6-v2 were
  pretrained);
* ``pooler``: ``shared`` (one dense+tanh for all exits, as PABEE), ``per-exit``
  (one per exit) or ``none``.

The model exposes the three pieces that become ONNX subgraphs (``embed``,
``run_layer``, ``exit_output``) so the exported graphs and the eager PyTorch
reference run literally the same modules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from exporter.backbones import BackboneSpec, get_backbone_spec

__all__ = ["HeadConfig", "MultiExitModel", "TaskSpec", "TASK_KINDS", "POOLINGS", "POOLERS"]

TASK_KINDS = ("classification", "regression")
POOLINGS = ("cls", "mean")
POOLERS = ("shared", "per-exit", "none")


@dataclass(frozen=True)
class TaskSpec:
    """What the exits predict."""

    name: str
    kind: str  # "classification" | "regression"
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task kind must be one of {TASK_KINDS}; got {self.kind!r}")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError(f"a classification task needs >= 2 labels; got {list(self.labels)}")
        if self.kind == "regression" and self.labels:
            raise ValueError(f"a regression task has no labels; got {list(self.labels)}")

    @property
    def num_outputs(self) -> int:
        return len(self.labels) if self.kind == "classification" else 1

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskSpec":
        return cls(name=str(data["name"]), kind=str(data["kind"]), labels=tuple(str(x) for x in data["labels"]))


@dataclass(frozen=True)
class HeadConfig:
    """How each exit turns hidden states into outputs."""

    pooling: str = "cls"
    pooler: str = "shared"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {self.pooling!r}")
        if self.pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}; got {self.pooler!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        return cls(pooling=str(data["pooling"]), pooler=str(data["pooler"]), dropout=float(data["dropout"]))


def _hidden_size(config) -> int:
    return int(getattr(config, "hidden_size", None) or config.dim)


def _num_heads(config) -> int:
    return int(getattr(config, "num_attention_heads", None) or config.n_heads)


def _num_layers(config) -> int:
    return int(getattr(config, "num_hidden_layers", None) or config.n_layers)


class _Pooler(nn.Module):
    """dense + tanh (BERT's pooler)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x))


class MultiExitModel(nn.Module):
    """Backbone + per-layer exits. ``forward`` returns every exit's output (training)."""

    def __init__(self, model_type: str, config, head: HeadConfig, task: TaskSpec, backbone: nn.Module | None = None):
        super().__init__()
        self.spec: BackboneSpec = get_backbone_spec(model_type)
        self.model_type = model_type
        self.head = head
        self.task = task
        self.backbone = backbone if backbone is not None else self.spec.build(config)
        self.config = self.backbone.config
        self.num_layers = _num_layers(self.config)
        self.hidden_size = _hidden_size(self.config)
        self.num_heads = _num_heads(self.config)
        n_poolers = {"shared": 1, "per-exit": self.num_layers, "none": 0}[head.pooler]
        self.poolers = nn.ModuleList([_Pooler(self.hidden_size) for _ in range(n_poolers)])
        self.dropout = nn.Dropout(head.dropout)
        self.classifiers = nn.ModuleList(nn.Linear(self.hidden_size, task.num_outputs) for _ in range(self.num_layers))
        # The backbone's own pooler is not part of the forward pass: its weights seed ours.
        pretrained = self.spec.pooler_weights(self.backbone)
        if pretrained is not None:
            with torch.no_grad():
                for pooler in self.poolers:
                    pooler.dense.weight.copy_(pretrained[0])
                    pooler.dense.bias.copy_(pretrained[1])
        if hasattr(self.backbone, "pooler"):
            self.backbone.pooler = None
            if hasattr(self.backbone, "pooler_activation"):
                self.backbone.pooler_activation = None

    # --- the three exported pieces -------------------------------------------------
    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embeddings step. ``attention_mask`` is accepted for a uniform signature."""
        del attention_mask
        return self.spec.embed(self.backbone, input_ids, token_type_ids)

    def run_layer(self, layer: int, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run 0-based ``layer`` (ALBERT: the shared block of that layer's group)."""
        block = self.spec.blocks(self.backbone)[self.spec.block_of_layer(self.backbone, layer)]
        return self.spec.run_block(block, hidden, attention_mask)

    def exit_output(self, layer: int, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Exit head of 0-based ``layer``: pool -> pooler -> dropout -> classifier."""
        if self.head.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            keep = attention_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        if self.head.pooler == "shared":
            pooled = self.poolers[0](pooled)
        elif self.head.pooler == "per-exit":
            pooled = self.poolers[layer](pooled)
        return self.classifiers[layer](self.dropout(pooled))

    # --- whole-model passes ----------------------------------------------------------
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        hidden = self.embed(input_ids, attention_mask, token_type_ids)
        outputs = []
        for layer in range(self.num_layers):
            hidden = self.run_layer(layer, hidden, attention_mask)
            outputs.append(self.exit_output(layer, hidden, attention_mask))
        return outputs

    def set_attention(self, implementation: str) -> None:
        """Switch the backbone's attention kernel ("eager" for export and reference, "sdpa" to train)."""
        if implementation not in ("eager", "sdpa"):
            raise ValueError(f"attention implementation must be 'eager' or 'sdpa'; got {implementation!r}")
        self.config._attn_implementation = implementation

    def block_groups(self) -> list[list[int]]:
        """For each distinct block, the 0-based layers that run it."""
        groups: dict[int, list[int]] = {}
        for layer in range(self.num_layers):
            groups.setdefault(self.spec.block_of_layer(self.backbone, layer), []).append(layer)
        return [groups[k] for k in sorted(groups)]

    @property
    def shares_blocks(self) -> bool:
        return any(len(g) > 1 for g in self.block_groups())

    # --- gradients w.r.t. word embeddings (attack harness) ------------------------------
    def word_embeddings(self) -> nn.Embedding:
        """The backbone's token (word) embedding table, ``[vocab, embedding_dim]``."""
        return self.backbone.get_input_embeddings()

    def embed_with_word_embeddings(
        self,
        word_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``embed`` with the word-embedding lookup replaced by ``word_embeds`` ``[batch, seq, dim]``.

        Positions, token types, layer norm and any projection are computed exactly as
        in ``embed`` (``input_ids`` still drive them), so gradients of the exit outputs
        with respect to ``word_embeds`` are gradients with respect to the looked-up
        word vectors. With ``word_embeds = word_embeddings()(input_ids)`` the result
        equals ``embed(input_ids, ...)``.
        """
        table = self.word_embeddings()
        expected = (*input_ids.shape, table.embedding_dim)
        if tuple(word_embeds.shape) != expected:
            raise ValueError(f"word_embeds must have shape {expected}; got {tuple(word_embeds.shape)}")
        handle = table.register_forward_hook(lambda _module, _args, _output: word_embeds)
        try:
            return self.embed(input_ids, attention_mask, token_type_ids)
        finally:
            handle.remove()
