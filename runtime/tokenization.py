"""Text -> token tensors, with the tokenizer shipped inside the model and the build.

Uses the Rust ``tokenizers`` library directly (no ``transformers`` at run time).
Inputs are single texts or ``(text_a, text_b)`` pairs; longer inputs are
truncated to the build's maximum sequence length and flagged as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

__all__ = ["EncodedBatch", "InputError", "TextEncoder", "TextInput", "validate_inputs"]

TextInput = Union[str, tuple[str, str]]


class InputError(ValueError):
    """An input text is empty, of the wrong type, or otherwise unusable."""


@dataclass
class EncodedBatch:
    """Padded token tensors for a batch (int64, [batch, seq])."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: np.ndarray  # bool [batch]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def take(self, rows: np.ndarray | slice) -> "EncodedBatch":
        return EncodedBatch(
            self.input_ids[rows], self.attention_mask[rows], self.token_type_ids[rows], self.truncated[rows]
        )


def validate_inputs(inputs: Sequence[TextInput]) -> list[TextInput]:
    """Check every input is a non-empty text or a pair of non-empty texts; return them as a list."""
    if isinstance(inputs, (str, tuple)):
        raise InputError(f"expected a list of texts or (text_a, text_b) pairs; got a single {type(inputs).__name__}")
    checked: list[TextInput] = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            parts: tuple[str, ...] = (item,)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            parts = tuple(item)
        else:
            raise InputError(
                f"input {i}: expected a text or a (text_a, text_b) pair; got {type(item).__name__} {item!r:.60}"
            )
        for part in parts:
            if not isinstance(part, str):
                raise InputError(f"input {i}: expected text (str); got {type(part).__name__} {part!r:.60}")
            if not part.strip():
                raise InputError(f"input {i}: empty text; every text must contain at least one non-space character")
        checked.append(parts[0] if len(parts) == 1 else (parts[0], parts[1]))
    if not checked:
        raise InputError("no inputs: expected at least one text")
    return checked


class TextEncoder:
    """Tokenize, truncate to ``max_length`` and pad to the longest row of each batch."""

    def __init__(self, tokenizer_json: str, max_length: int, pad_id: int):
        from tokenizers import Tokenizer

        if max_length < 4:
            raise ValueError(f"max_length must be >= 4; got {max_length}")
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length, strategy="longest_first")

    def encode(self, inputs: Sequence[TextInput]) -> EncodedBatch:
        texts = validate_inputs(inputs)
        encodings = self._tokenizer.encode_batch([t if isinstance(t, str) else tuple(t) for t in texts])
        width = max(len(e.ids) for e in encodings)
        batch = len(encodings)
        input_ids = np.full((batch, width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((batch, width), dtype=np.int64)
        token_type_ids = np.zeros((batch, width), dtype=np.int64)
        truncated = np.zeros(batch, dtype=bool)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            input_ids[row, :n] = enc.ids
            attention_mask[row, :n] = 1
            token_type_ids[row, :n] = enc.type_ids
            truncated[row] = len(enc.overflowing) > 0
        return EncodedBatch(input_ids, attention_mask, token_type_ids, truncated)
