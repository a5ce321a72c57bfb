"""Wall-clock helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

__all__ = ["interleaved_medians"]


def interleaved_medians(variants: dict[str, Callable[[int], Any]], n: int, reps: int) -> dict[str, list[float]]:
    """Per-item median seconds of each variant; the variants alternate item by item, ``reps`` times,
    so that machine noise hits all of them alike."""
    times: dict[str, list[list[float]]] = {name: [[] for _ in range(n)] for name in variants}
    for _ in range(reps):
        for i in range(n):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                fn(i)
                times[name][i].append(time.perf_counter() - t0)
    return {name: [statistics.median(t) for t in per_item] for name, per_item in times.items()}
