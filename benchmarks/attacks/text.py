"""``AttackedText``: one input under attack, as words that can be swapped one at a time.

Pair inputs (``(text_a, text_b)``) are attacked in one column only; the other
column is carried along unchanged. The perturbed column is kept as words plus the
separators between them, so swapping a word never re-splits the text (a homoglyph
or an inserted character cannot shift the word indices that the constraints and
the search keep track of).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from runtime.tokenization import TextInput

__all__ = ["AttackedText", "split_words"]

# Letters/digits, with inner apostrophes or hyphens ("n't", "well-made").
_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")


def split_words(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``text`` -> (words, gaps) with ``gaps[0] + words[0] + gaps[1] + ... + gaps[-1] == text``."""
    words: list[str] = []
    gaps: list[str] = []
    last = 0
    for match in _WORD_RE.finditer(text):
        gaps.append(text[last : match.start()])
        words.append(match.group(0))
        last = match.end()
    gaps.append(text[last:])
    return tuple(words), tuple(gaps)


@dataclass(frozen=True)
class AttackedText:
    """An input with one perturbable column; immutable, hashable, cheap to copy."""

    columns: tuple[str, ...]
    column: int
    words: tuple[str, ...]
    gaps: tuple[str, ...]
    original_words: tuple[str, ...]
    modified: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def from_input(cls, item: TextInput, column: int | None = None) -> "AttackedText":
        """A fresh (unperturbed) text. ``column``: which text of a pair to perturb (default: the last)."""
        columns = (item,) if isinstance(item, str) else tuple(item)
        if len(columns) not in (1, 2) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"expected a text or a (text_a, text_b) pair; got {item!r:.80}")
        column = len(columns) - 1 if column is None else column
        if not 0 <= column < len(columns):
            raise ValueError(f"column must be in 0..{len(columns) - 1} for this input; got {column}")
        words, gaps = split_words(columns[column])
        return cls(columns, column, words, gaps, words)

    @property
    def text(self) -> str:
        """The perturbed column as a string."""
        parts = [self.gaps[0]]
        for word, gap in zip(self.words, self.gaps[1:]):
            parts.append(word)
            parts.append(gap)
        return "".join(parts)

    @property
    def input(self) -> TextInput:
        """What the model is fed: a text, or the pair with the perturbed column in place."""
        cols = list(self.columns)
        cols[self.column] = self.text
        return cols[0] if len(cols) == 1 else (cols[0], cols[1])

    @property
    def num_words(self) -> int:
        return len(self.words)

    def replace_word(self, index: int, word: str) -> "AttackedText":
        if not 0 <= index < len(self.words):
            raise IndexError(f"word index must be in 0..{len(self.words) - 1}; got {index}")
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"a replacement must be one non-empty word without spaces; got {word!r}")
        words = list(self.words)
        words[index] = word
        return replace(self, words=tuple(words), modified=self.modified | {index})

    def changed_indices(self) -> list[int]:
        """Word indices whose word differs from the original."""
        return [i for i, (a, b) in enumerate(zip(self.words, self.original_words)) if a != b]

    @property
    def words_changed(self) -> int:
        return len(self.changed_indices())

    @property
    def fraction_changed(self) -> float:
        return self.words_changed / self.num_words if self.num_words else 0.0

    def word_char_spans(self) -> list[tuple[int, int]]:
        """Character span of every word inside ``text`` (the perturbed column)."""
        spans = []
        pos = len(self.gaps[0])
        for word, gap in zip(self.words, self.gaps[1:]):
            spans.append((pos, pos + len(word)))
            pos += len(word) + len(gap)
        return spans
