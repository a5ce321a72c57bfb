"""The PyTorch reference: the multi-exit model run eagerly, layer by layer.

``TorchExecutor`` runs the very modules the ONNX graphs were exported from, with
the same orchestration (``runtime.chain.run_chain``) and the same policy objects,
so its predictions and exit layers are the ground truth the compiled runtime is
compared against.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from exporter.checkpoint import Checkpoint, load_model_source
from exporter.model import MultiExitModel
from runtime.policies import policy_from_dict
from runtime.session import Session, TaskInfo
from runtime.tokenization import EncodedBatch, TextEncoder

__all__ = ["TorchExecutor", "load_reference", "reference_session"]


class TorchExecutor:
    """``StepExecutor`` over an eager ``MultiExitModel`` (CPU, fp32, no grad)."""

    def __init__(self, model: MultiExitModel):
        self.model = model.eval()
        self.num_layers = model.num_layers

    @torch.no_grad()
    def embed(self, batch: EncodedBatch) -> np.ndarray:
        token_types = torch.from_numpy(batch.token_type_ids) if self.model.spec.uses_token_types else None
        hidden = self.model.embed(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask), token_types)
        return hidden.numpy()

    @torch.no_grad()
    def layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = torch.from_numpy(hidden)
        m = torch.from_numpy(attention_mask)
        out_hidden = self.model.run_layer(index, h, m)
        return out_hidden.numpy(), self.model.exit_output(index, out_hidden, m).numpy()


def reference_session(ckpt: Checkpoint, max_seq_len: int | None = None, batch_size: int = 32) -> Session:
    """A ``Session`` whose chain runs the eager PyTorch model."""
    model = ckpt.model
    max_len = min(max_seq_len or ckpt.tokenizer.max_length, ckpt.tokenizer.max_length)
    encoder = TextEncoder(ckpt.tokenizer.json, max_len, ckpt.tokenizer.pad_id)
    task = TaskInfo(model.task.name, model.task.kind, tuple(model.task.labels))
    return Session(TorchExecutor(model), encoder, task, policy_from_dict(ckpt.default_policy), batch_size=batch_size)


def load_reference(model_path: str | os.PathLike, max_seq_len: int | None = None, batch_size: int = 32) -> Session:
    """``model.pt`` (or a PABEE folder) -> reference ``Session``."""
    return reference_session(load_model_source(model_path), max_seq_len, batch_size)
