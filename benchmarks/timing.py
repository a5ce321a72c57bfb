"""Wall-clock helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

__all__ = ["interleaved_medians"]


def interleaved_medians(
    variants: dict[str, Callable[[int], Any]], n: int, reps: int, block: int = 1
) -> dict[str, list[float]]:
    """Per-item median seconds of each variant over ``reps`` repetitions.

    The variants alternate every ``block`` items, so machine noise hits all of them alike.
    ``block=1`` alternates item by item; a larger block lets each variant run a stretch of
    consecutive requests with its own weights warm in cache, as a server would.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1; got {block}")
    times: dict[str, list[list[float]]] = {name: [[] for _ in range(n)] for name in variants}
    for _ in range(reps):
        for start in range(0, n, block):
            for name, fn in variants.items():
                for i in range(start, min(start + block, n)):
                    t0 = time.perf_counter()
                    fn(i)
                    times[name][i].append(time.perf_counter() - t0)
    return {name: [statistics.median(t) for t in per_item] for name, per_item in times.items()}
