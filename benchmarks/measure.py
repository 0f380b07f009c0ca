"""Timing for the benchmark runner: contenders called in turn, the best call of each."""

from __future__ import annotations

import gc
import time
from typing import Any, Callable


def interleaved_times(
    fns: list[Callable[[], Any]],
    repeat: int,
    *,
    warmup: int = 3,
    budget: float = 1.0,
    min_repeat: int = 3,
) -> tuple[list[float], int]:
    """The best time of one call of each function, in seconds, and the rounds timed.

    Each function is first called up to ``warmup`` times, untimed (compilation,
    caches): once, and again while the calls are short next to ``budget``.
    Then the functions are called in turn, so that slow drifts of the machine
    hit every contender alike, for ``repeat`` rounds, or fewer where they would
    take longer than ``budget`` seconds in all (estimated from the last
    warm-up calls), but at least ``min_repeat`` (or ``repeat`` if fewer).  Each
    round starts with the next function, so that none always runs right after
    the same other one (whose freed memory may slow the next call).  The
    garbage collector is off while timing, as in ``timeit``.
    """
    cost = 0.0
    for fn in fns:
        for _ in range(max(1, warmup)):
            last = _seconds(fn)
            if last > budget / 10:
                break
        cost += last
    rounds = min(repeat, max(min_repeat, int(budget / max(cost, 1e-9))))
    best = [float("inf")] * len(fns)
    k = len(fns)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for step in range(k):
                i = (r + step) % k
                best[i] = min(best[i], _seconds(fns[i]))
    finally:
        if enabled:
            gc.enable()
    return best, rounds


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
