"""Transformations: the candidate texts one step away from a text.

Every transformation maps ``(text, allowed word indices, gradients, rng)`` to a list
of candidate ``AttackedText`` s, each differing from ``text`` in one word, in a
deterministic priority order (best first where the transformation has a notion of
best; seeded random order otherwise).

* ``WordNetSwap``: WordNet synonyms (TextAttack's ``WordSwapWordNet``).
* ``EmbeddingNeighbourSwap``: nearest neighbours of the word in the victim's own
  word-embedding table (cosine), for words that are one word piece.
* ``HotFlipSwap``: first-order (HotFlip) swaps over the victim's vocabulary: the loss
  change of replacing word ``w`` by token ``v`` is estimated as
  ``(E_v - E_w) . dL/dE_w``; the ``top_n`` most negative over all allowed words.
* ``CharacterEdits``: neighbour swaps, insertions, deletions and homoglyphs on the
  words holding the ``top_k_tokens`` tokens with the highest gradient score.
* ``CompositeTransformation``: the union, part after part or round-robin over the parts.
"""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from benchmarks.attacks.text import AttackedText
from benchmarks.attacks.victim import WordGradients

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.attacks.victim import Victim
    from benchmarks.attacks.wordnet import WordNet

__all__ = [
    "CharacterEdits",
    "CompositeTransformation",
    "EmbeddingNeighbourSwap",
    "HOMOGLYPHS",
    "HotFlipSwap",
    "Transformation",
    "WordNetSwap",
    "candidate_vocabulary",
    "character_mutations",
]

# Latin letters/digits -> look-alike code points (Cyrillic, Greek, Armenian, math alphanumerics, ...).
HOMOGLYPHS: dict[str, str] = {
    "a": "\u0251", "b": "\u042c", "c": "\u03f2", "d": "\u0501", "e": "\u0435", "f": "\U0001d68f",
    "g": "\u0261", "h": "\u0570", "i": "\u0456", "j": "\u03f3", "k": "\U0001d48c", "l": "\u217c",
    "m": "\uff4d", "n": "\u0578", "o": "\u043e", "p": "\u0440", "q": "\u051b", "r": "\u2c85",
    "s": "\u0455", "t": "\U0001d69d", "u": "\u057d", "v": "\u0475", "w": "\u051d", "x": "\u00d7",
    "y": "\u0443", "z": "\u1d22", "0": "O", "1": "l", "2": "\u14bf", "3": "\u01b7", "4": "\u13ce",
    "5": "\u01bc", "6": "\u0431", "7": "\U0001d7d5", "8": "\u0222", "9": "\u09ed", "-": "\u02d7", "'": "`",
}


class Transformation(ABC):
    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = False

    @abstractmethod
    def __call__(
        self, text: AttackedText, indices: set[int], grads: WordGradients | None, rng: np.random.Generator
    ) -> list[AttackedText]: ...

    def params(self) -> dict[str, object]:
        return {"name": self.name}


def _swap_all(text: AttackedText, index: int, words: Sequence[str]) -> list[AttackedText]:
    current = text.words[index]
    return [text.replace_word(index, w) for w in words if w and w != current]


class _WordSwap(Transformation):
    """Swaps each allowed word for each of its ``replacements`` (in their order)."""

    @abstractmethod
    def replacements(self, word: str) -> Sequence[str]: ...

    def __call__(self, text, indices, grads, rng):
        out: list[AttackedText] = []
        for i in sorted(indices):
            out.extend(_swap_all(text, i, self.replacements(text.words[i])))
        return out


class WordNetSwap(_WordSwap):
    name = "wordnet-synonyms"

    def __init__(self, wordnet: "WordNet", max_candidates: int | None = None) -> None:
        self.wordnet = wordnet
        self.max_candidates = max_candidates

    def replacements(self, word: str) -> list[str]:
        found = list(self.wordnet.synonyms(word))
        return found if self.max_candidates is None else found[: self.max_candidates]

    def params(self) -> dict[str, object]:
        return {"name": self.name, "max_candidates": self.max_candidates}


def candidate_vocabulary(vocab: Sequence[str], special_ids: set[int]) -> np.ndarray:
    """Boolean mask of tokens a word may be swapped to: whole words of letters only (no specials, no '##')."""
    return np.asarray(
        [bool(tok) and i not in special_ids and not tok.startswith("##") and tok.isalpha() for i, tok in enumerate(vocab)],
        dtype=bool,
    )


class EmbeddingNeighbourSwap(_WordSwap):
    """The ``k`` nearest whole-word tokens of a one-piece word in the victim's embedding table (cosine)."""

    name = "embedding-neighbours"

    def __init__(self, victim: "Victim", k: int = 15, min_cosine: float | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}")
        self.victim = victim
        self.k = k
        self.min_cosine = min_cosine
        self._vocab = victim.vocabulary()
        self._ids = np.flatnonzero(candidate_vocabulary(self._vocab, victim.special_token_ids()))
        table = victim.embedding_matrix()
        norms = np.linalg.norm(table, axis=1, keepdims=True).clip(min=1e-12)
        self._unit = table / norms
        self._unit_candidates = self._unit[self._ids]
        self._cache: dict[str, tuple[str, ...]] = {}

    def replacements(self, word: str) -> tuple[str, ...]:
        if word not in self._cache:
            ids = self.victim.token_ids(word.lower())
            found: tuple[str, ...] = ()
            if len(ids) == 1 and self._vocab[ids[0]].isalpha():
                sims = self._unit_candidates @ self._unit[ids[0]]
                order = np.argsort(-sims, kind="stable")
                picked = []
                for j in order[: self.k + 1]:
                    tok = self._vocab[self._ids[j]]
                    if tok == self._vocab[ids[0]] or (self.min_cosine is not None and sims[j] < self.min_cosine):
                        continue
                    picked.append(tok)
                found = tuple(picked[: self.k])
            self._cache[word] = found
        return self._cache[word]

    def params(self) -> dict[str, object]:
        return {"name": self.name, "k": self.k, "min_cosine": self.min_cosine, "table": "victim word embeddings"}


class HotFlipSwap(Transformation):
    """First-order swaps over the victim's vocabulary (one-piece words only, as SAME's released code)."""

    name = "hotflip"
    needs_gradients = True

    def __init__(self, victim: "Victim", top_n: int = 100) -> None:
        if top_n < 1:
            raise ValueError(f"top_n must be >= 1; got {top_n}")
        self.top_n = top_n
        self._vocab = victim.vocabulary()
        self._valid = candidate_vocabulary(self._vocab, victim.special_token_ids())
        self._table = victim.embedding_matrix()

    def scores(self, grads: WordGradients, positions: Sequence[int]) -> np.ndarray:
        """``[len(positions), vocab]``: ``(E_v - E_w) . g_w``; +inf for tokens a word may not become."""
        g = grads.grads[list(positions)]  # [n, dim]
        current = grads.token_ids[list(positions)]
        estimate = g @ self._table.T  # [n, vocab]
        estimate -= np.einsum("nd,nd->n", g, self._table[current])[:, None]
        estimate[:, ~self._valid] = np.inf
        estimate[np.arange(len(positions)), current] = np.inf
        return estimate

    def __call__(self, text, indices, grads, rng):
        if grads is None:
            raise ValueError("HotFlipSwap needs the gradients of the current text")
        words = [i for i in sorted(indices) if len(grads.word_tokens[i]) == 1]
        if not words:
            return []
        positions = [grads.word_tokens[i][0] for i in words]
        estimate = self.scores(grads, positions)
        flat = estimate.ravel()
        finite = int(np.isfinite(flat).sum())
        take = min(self.top_n, finite)
        if take == 0:
            return []
        best = np.argpartition(flat, take - 1)[:take] if take < flat.size else np.arange(flat.size)
        best = best[np.lexsort((best, flat[best]))]  # by estimate, then index: deterministic
        out = []
        vocab_size = estimate.shape[1]
        for flat_index in best:
            row, token = divmod(int(flat_index), vocab_size)
            out.append(text.replace_word(words[row], self._vocab[token]))
        return out

    def params(self) -> dict[str, object]:
        return {"name": self.name, "top_n": self.top_n, "vocabulary": "victim's, whole alphabetic tokens"}


def character_mutations(word: str, rng: np.random.Generator, letters: str = string.ascii_letters) -> list[str]:
    """Neighbour swaps, one random letter inserted at each position, each letter deleted, each homoglyph."""
    out: list[str] = []
    if len(word) > 1:
        out += [word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)]
        out += [word[:i] + letters[int(rng.integers(len(letters)))] + word[i:] for i in range(len(word))]
        out += [word[:i] + word[i + 1 :] for i in range(len(word))]
    out += [word[:i] + HOMOGLYPHS[c] + word[i + 1 :] for i, c in enumerate(word) if c in HOMOGLYPHS]
    return [m for m in dict.fromkeys(out) if m and m != word]


class CharacterEdits(Transformation):
    """Character edits on the words holding the ``top_k_tokens`` highest-scoring tokens.

    Token score as SAME's released code ranks tokens: the sum over embedding
    dimensions of dL/dE (summed over the token's occurrences); higher first. Of all
    mutations, ``max_candidates`` are sampled (seeded).
    """

    name = "character-edits"
    needs_gradients = True

    def __init__(self, top_k_tokens: int = 10, max_candidates: int = 200, special_ids: set[int] | None = None):
        if top_k_tokens < 1 or max_candidates < 1:
            raise ValueError(f"top_k_tokens and max_candidates must be >= 1; got {top_k_tokens}, {max_candidates}")
        self.top_k_tokens = top_k_tokens
        self.max_candidates = max_candidates
        self.special_ids = set(special_ids or ())

    def top_tokens(self, grads: WordGradients) -> set[int]:
        per_position = grads.grads.sum(axis=1)
        totals: dict[int, float] = {}
        for token, score in zip(grads.token_ids.tolist(), per_position.tolist()):
            totals[token] = totals.get(token, 0.0) + score
        ranked = sorted(totals, key=lambda t: (-totals[t], t))
        return set(ranked[: self.top_k_tokens])

    def __call__(self, text, indices, grads, rng):
        if grads is None:
            raise ValueError("CharacterEdits needs the gradients of the current text")
        top = self.top_tokens(grads) - self.special_ids
        pairs: list[tuple[int, str]] = []
        for i in sorted(indices):
            tokens = {int(grads.token_ids[p]) for p in grads.word_tokens[i]}
            if tokens & top:
                pairs.extend((i, m) for m in character_mutations(text.words[i], rng))
        if len(pairs) > self.max_candidates:
            keep = rng.choice(len(pairs), size=self.max_candidates, replace=False)
            pairs = [pairs[int(k)] for k in keep]
        return [text.replace_word(i, m) for i, m in pairs]

    def params(self) -> dict[str, object]:
        return {
            "name": self.name,
            "top_k_tokens": self.top_k_tokens,
            "max_candidates": self.max_candidates,
            "edits": "neighbour swap, insertion, deletion, homoglyph",
            "token_score": "sum_d dL/dE (SAME released code), highest first",
        }


class CompositeTransformation(Transformation):
    name = "composite"

    def __init__(self, parts: Sequence[Transformation], interleave: bool = False) -> None:
        if not parts:
            raise ValueError("a composite transformation needs at least one part")
        self.parts = tuple(parts)
        self.interleave = interleave

    @property
    def needs_gradients(self) -> bool:  # type: ignore[override]
        return any(p.needs_gradients for p in self.parts)

    def __call__(self, text, indices, grads, rng):
        outputs = [part(text, indices, grads, rng) for part in self.parts]
        if not self.interleave:
            return [c for out in outputs for c in out]
        merged: list[AttackedText] = []
        for k in range(max(len(o) for o in outputs)):
            merged.extend(o[k] for o in outputs if k < len(o))
        return merged

    def params(self) -> dict[str, object]:
        return {"name": self.name, "parts": [p.params() for p in self.parts],
                "order": "round-robin over the parts" if self.interleave else "part after part"}
