"""Attack recipes, selectable by name. Each recipe composes parts; it adds no logic of its own.

==========  ==========================================================  ==========================
name        paper                                                        module
==========  ==========================================================  ==========================
accuracy    baseline: untargeted accuracy attack, WordNet swaps          ``accuracy_baseline``
same        Chen et al., ACL 2023 (SAME)                                 ``same_chen_2023``
waffle      Coalson et al., NeurIPS 2023 (WAFFLE)                        ``waffle_coalson_2023``
==========  ==========================================================  ==========================
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from benchmarks.attacks.sentence_encoder import SentenceEncoder
    from benchmarks.attacks.victim import Victim
    from benchmarks.attacks.wordnet import WordNet

__all__ = ["RECIPES", "Resources", "build_recipe", "recipe_names"]

# name -> "module:Class" (imported on use)
RECIPES: dict[str, str] = {
    "accuracy": "benchmarks.attacks.recipes.accuracy_baseline:AccuracyBaseline",
    "same": "benchmarks.attacks.recipes.same_chen_2023:SameChen2023",
    "waffle": "benchmarks.attacks.recipes.waffle_coalson_2023:WaffleCoalson2023",
}


def recipe_names() -> list[str]:
    return list(RECIPES)


@dataclass
class Resources:
    """Shared, lazily opened resources: WordNet and the sentence encoder."""

    wordnet_dir: Path = Path("/usr/share/wordnet")
    cache_dir: Path | None = None
    sentence_model_dir: Path | None = None
    _wordnet: "WordNet | None" = field(default=None, repr=False)
    _encoder: "SentenceEncoder | None" = field(default=None, repr=False)

    def wordnet(self) -> "WordNet":
        if self._wordnet is None:
            from benchmarks.attacks.wordnet import WordNet

            self._wordnet = WordNet(self.wordnet_dir, self.cache_dir)
            self._wordnet.version()  # open now: a missing database fails before any attack starts
        return self._wordnet

    def sentence_encoder(self) -> "SentenceEncoder":
        if self._encoder is None:
            from benchmarks.attacks.sentence_encoder import SentenceEncoder

            self._encoder = SentenceEncoder(self.sentence_model_dir)
        return self._encoder


def build_recipe(name: str, victim: "Victim", resources: Resources, seed: int = 0, **overrides: Any):
    """Instantiate recipe ``name`` with its default parameters, ``overrides`` replacing some."""
    if name not in RECIPES:
        raise ValueError(f"unknown attack recipe {name!r}; expected one of {recipe_names()}")
    module_name, class_name = RECIPES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    params = cls.Params(**overrides)
    return cls(victim, resources, params=params, seed=seed)
