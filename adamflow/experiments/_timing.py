"""The one timer of the experiments: wall-clock seconds of a call, cold and warm."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """Seconds one call of ``function`` takes (results blocked on), and its result."""
    start = time.perf_counter()
    result = _block(function())
    return time.perf_counter() - start, result


def median_time(function: Callable[[], Any], repeats: int) -> float:
    """Median of ``repeats`` timed calls (run after a warm-up, so compilation is excluded)."""
    return statistics.median(timed(function)[0] for _ in range(max(1, repeats)))


def best_time(function: Callable[[], Any], repeats: int) -> float:
    """Best of ``repeats`` timed calls."""
    return min((timed(function)[0] for _ in range(max(1, repeats))), default=math.inf)


def cold_and_warm(function: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Seconds of the first call (with compilation) and the median of ``repeats`` more."""
    cold, _ = timed(function)
    return cold, median_time(function, repeats)


def _block(result: T) -> T:
    import jax

    return jax.block_until_ready(result)
