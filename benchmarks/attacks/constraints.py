"""Constraints: which words may change, and which perturbed texts are acceptable.

Two kinds, as in TextAttack:

* *pre-transformation* constraints narrow the word indices a transformation may
  touch (``allowed_indices``): stopwords, no word changed twice, the cap on words
  changed;
* *post-transformation* constraints accept or reject candidate texts against the
  original (``check_many``): the cap on words changed (again, on the candidate),
  sentence similarity.

``expensive`` constraints (sentence similarity: a transformer forward pass per
candidate) are checked lazily by the searches: only for the candidates a search is
about to accept, best first, which returns the same accepted text as filtering
every candidate first.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Sequence

from benchmarks.attacks.text import AttackedText

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.attacks.sentence_encoder import SentenceEncoder

__all__ = [
    "Constraint",
    "MaxWordsPerturbed",
    "NoRepeatModification",
    "STOPWORDS",
    "SentenceSimilarity",
    "StopwordModification",
    "allowed_indices",
    "check_all",
]

# English stopwords (the usual NLTK-style list, plus SST-2's split contractions).
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against ain all am an and any are aren aren't as at be because been before being
    below between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down
    during each few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers
    herself him himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more
    most mustn mustn't my myself needn needn't no nor not now o of off on once only or other our ours ourselves
    out over own re s same shan shan't she she's should should've shouldn shouldn't so some such t than that
    that'll the their theirs them themselves then there these they this those through to too under until up ve
    very was wasn wasn't we were weren weren't what when where which while who whom why will with won won't
    wouldn wouldn't y you you'd you'll you're you've your yours yourself yourselves n't 's 're 've 'll 'd 'm
    """.split()
)


class Constraint:
    """Base: allows everything. Subclasses override one or both hooks."""

    name: ClassVar[str] = "constraint"
    expensive: ClassVar[bool] = False

    def allowed_indices(self, text: AttackedText, indices: set[int]) -> set[int]:
        """Pre-transformation: the subset of ``indices`` that may be modified in ``text``."""
        return indices

    def check_many(self, candidates: Sequence[AttackedText], original: AttackedText) -> list[bool]:
        """Post-transformation: which ``candidates`` are acceptable perturbations of ``original``."""
        return [True] * len(candidates)

    def reset(self) -> None:
        """Forget per-example caches (called before each attacked example)."""

    def params(self) -> dict[str, object]:
        return {"name": self.name}


class StopwordModification(Constraint):
    """Stopwords are never modified."""

    name = "no-stopwords"

    def __init__(self, stopwords: frozenset[str] = STOPWORDS) -> None:
        self.stopwords = frozenset(w.lower() for w in stopwords)

    def allowed_indices(self, text: AttackedText, indices: set[int]) -> set[int]:
        return {i for i in indices if text.original_words[i].lower() not in self.stopwords}

    def params(self) -> dict[str, object]:
        return {"name": self.name, "stopwords": len(self.stopwords)}


class NoRepeatModification(Constraint):
    """A word that was modified once is not modified again."""

    name = "no-word-twice"

    def allowed_indices(self, text: AttackedText, indices: set[int]) -> set[int]:
        return indices - set(text.modified)


class MaxWordsPerturbed(Constraint):
    """At most ``max(min_words, ceil(max_fraction * n_words))`` words differ from the original."""

    name = "max-words-perturbed"

    def __init__(self, max_fraction: float, min_words: int) -> None:
        if not 0.0 < max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1]; got {max_fraction}")
        if min_words < 0:
            raise ValueError(f"min_words must be >= 0; got {min_words}")
        self.max_fraction = float(max_fraction)
        self.min_words = int(min_words)

    def limit(self, num_words: int) -> int:
        return max(self.min_words, math.ceil(num_words * self.max_fraction - 1e-9))

    def allowed_indices(self, text: AttackedText, indices: set[int]) -> set[int]:
        changed = set(text.changed_indices())
        if len(changed) >= self.limit(text.num_words):
            return indices & changed  # only words already changed may change (again)
        return indices

    def check_many(self, candidates: Sequence[AttackedText], original: AttackedText) -> list[bool]:
        limit = self.limit(original.num_words)
        return [c.words_changed <= limit for c in candidates]

    def params(self) -> dict[str, object]:
        return {"name": self.name, "max_fraction": self.max_fraction, "min_words": self.min_words}


class SentenceSimilarity(Constraint):
    """Cosine similarity of sentence embeddings (perturbed column vs original) >= ``min_similarity``."""

    name = "sentence-similarity"
    expensive = True

    def __init__(self, encoder: "SentenceEncoder", min_similarity: float = 0.9) -> None:
        if not -1.0 <= min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1]; got {min_similarity}")
        self.encoder = encoder
        self.min_similarity = float(min_similarity)

    def similarities(self, candidates: Sequence[AttackedText], original: AttackedText) -> list[float]:
        return [float(s) for s in self.encoder.similarity(original.text, [c.text for c in candidates])]

    def check_many(self, candidates: Sequence[AttackedText], original: AttackedText) -> list[bool]:
        return [s >= self.min_similarity for s in self.similarities(candidates, original)]

    def reset(self) -> None:
        self.encoder.clear_cache()

    def params(self) -> dict[str, object]:
        return {"name": self.name, "min_cosine": self.min_similarity, "encoder": "all-MiniLM-L6-v2 (mean pooled)",
                "checked": "lazily, best candidate first, only on candidates a search would accept; "
                "query counts include candidates it later rejects"}


def allowed_indices(constraints: Sequence[Constraint], text: AttackedText) -> set[int]:
    """Word indices of ``text`` that every pre-transformation constraint allows."""
    indices = set(range(text.num_words))
    for constraint in constraints:
        indices = constraint.allowed_indices(text, indices)
        if not indices:
            break
    return indices


def check_all(
    constraints: Sequence[Constraint], candidates: Sequence[AttackedText], original: AttackedText, expensive: bool
) -> list[AttackedText]:
    """``candidates`` that pass every cheap (``expensive=False``) or every expensive constraint."""
    kept = list(candidates)
    for constraint in constraints:
        if constraint.expensive != expensive or not kept:
            continue
        kept = [c for c, ok in zip(kept, constraint.check_many(kept, original)) if ok]
    return kept
