"""Search methods: how an attack walks from the original text towards its goal.

* ``GreedyWordImportance`` (TextAttack's ``GreedyWordSwapWIR``): rank the words once
  by importance, then visit them in that order, each time swapping in the best
  candidate if it beats the current text; stop at success or when the query budget
  is spent. Importance is ``"gradient"`` (L1 norm of d loss / d word embedding over
  the word's pieces, white-box) or ``"leave-one-out"`` (the goal score with the
  word replaced by ``[UNK]``; costs one query per word, black-box).
* ``BeamSearch`` (SAME's released ``WhiteBoxSearchAttack``): each round expands every
  text in the beam (gradients of each), scores the pooled candidates in batches,
  keeps the ``beam_width`` best (by goal score, then tie-break), and remembers the
  best text seen; stops at success, after ``max_rounds``, when no candidate is left
  or the budget is spent. With ``chunk_size`` (a speed tuning, not in the released
  code) a round's candidates are interleaved across the beam texts (each text's
  candidates stay in their transformation's priority order) and scored chunk by
  chunk, and the round ends at the first chunk that holds a success.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from benchmarks.attacks.goals import GoalResult

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.attacks.attack import AttackContext

__all__ = ["BeamSearch", "GreedyWordImportance", "SearchMethod", "rank_results"]


def rank_results(results: list[GoalResult]) -> list[GoalResult]:
    """Best first (score, then tie-break); stable, so equal ranks keep query order."""
    return sorted(results, key=lambda r: r.rank, reverse=True)


class SearchMethod(ABC):
    name: ClassVar[str]
    needs_gradients: ClassVar[bool] = False

    @abstractmethod
    def perform(self, ctx: "AttackContext", initial: GoalResult) -> GoalResult: ...

    def params(self) -> dict[str, object]:
        return {"name": self.name}


class GreedyWordImportance(SearchMethod):
    name = "greedy-word-importance"
    IMPORTANCE = ("gradient", "leave-one-out")

    def __init__(self, importance: str = "leave-one-out", unk_token: str = "[UNK]") -> None:
        if importance not in self.IMPORTANCE:
            raise ValueError(f"importance must be one of {self.IMPORTANCE}; got {importance!r}")
        self.importance = importance
        self.unk_token = unk_token

    @property
    def needs_gradients(self) -> bool:  # type: ignore[override]
        return self.importance == "gradient"

    def word_order(self, ctx: "AttackContext", initial: GoalResult) -> list[int]:
        """Word indices the constraints allow, most important first (ties: left to right)."""
        indices = sorted(ctx.allowed_indices(initial.text))
        if not indices:
            return []
        if self.importance == "gradient":
            importance = ctx.gradients(initial.text).word_l1()[indices]
        else:
            probes = [initial.text.replace_word(i, self.unk_token) for i in indices]
            results = ctx.get_results(probes)
            importance = np.asarray([r.score for r in results] + [-np.inf] * (len(indices) - len(results)))
        order = np.lexsort((np.asarray(indices), -importance))
        return [indices[k] for k in order]

    def perform(self, ctx, initial):
        current = initial
        for index in self.word_order(ctx, initial):
            if ctx.exhausted or current.succeeded:
                break
            candidates = ctx.candidates(current.text, only={index})
            if not candidates:
                continue
            better = [r for r in rank_results(ctx.get_results(candidates)) if r.rank > current.rank]
            accepted = ctx.accept(better, 1)
            if accepted:
                current = accepted[0]
        return current

    def params(self) -> dict[str, object]:
        return {"name": self.name, "importance": self.importance}


class BeamSearch(SearchMethod):
    name = "beam"
    needs_gradients = True

    def __init__(self, beam_width: int = 5, max_rounds: int = 10, chunk_size: int | None = None) -> None:
        if beam_width < 1 or max_rounds < 1:
            raise ValueError(f"beam_width and max_rounds must be >= 1; got {beam_width}, {max_rounds}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None; got {chunk_size}")
        self.beam_width = beam_width
        self.max_rounds = max_rounds
        self.chunk_size = chunk_size

    @staticmethod
    def interleave(per_text: list[list]) -> list:
        """Round-robin over the beam's candidate lists (best beam text first), keeping each list's order."""
        out = []
        for k in range(max((len(c) for c in per_text), default=0)):
            out.extend(c[k] for c in per_text if k < len(c))
        return out

    def score_round(self, ctx: "AttackContext", pool: list) -> list[GoalResult]:
        """Score the pool; with ``chunk_size``, chunk by chunk, stopping at the first chunk holding a success."""
        if self.chunk_size is None:
            return ctx.get_results(pool)
        results: list[GoalResult] = []
        for start in range(0, len(pool), self.chunk_size):
            chunk = ctx.get_results(pool[start : start + self.chunk_size])
            results.extend(chunk)
            if any(r.succeeded for r in chunk) or ctx.exhausted:
                break
        return results

    def perform(self, ctx, initial):
        beam = [initial]
        best = initial
        for _ in range(self.max_rounds):
            per_text = []
            seen = {initial.text.input}
            for result in beam:
                if ctx.exhausted:
                    break
                grads = ctx.gradients(result.text)
                fresh = []
                for candidate in ctx.candidates(result.text, grads=grads):
                    if candidate.input not in seen:
                        seen.add(candidate.input)
                        fresh.append(candidate)
                per_text.append(fresh)
            pool = self.interleave(per_text) if self.chunk_size is not None else [c for p in per_text for c in p]
            if not pool or ctx.exhausted:
                break
            ranked = rank_results(self.score_round(ctx, pool))
            beam = ctx.accept(ranked, self.beam_width)
            if not beam:
                break
            if beam[0].rank > best.rank:
                best = beam[0]
            if best.succeeded or ctx.exhausted:
                break
        return best

    def params(self) -> dict[str, object]:
        return {"name": self.name, "beam_width": self.beam_width, "max_rounds": self.max_rounds,
                "ranking": "goal score, then tie-break; best text seen is kept",
                "chunk_size": self.chunk_size,
                "round_scoring": "all candidates of a round" if self.chunk_size is None else
                "candidates interleaved across the beam, scored in chunks; a round stops at the first chunk "
                "holding a success"}
