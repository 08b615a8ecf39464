"""Reconnect delays: exponential backoff with full jitter.

``delay(n) = uniform(0, min(cap, base * 2**n))`` for the n-th consecutive
failure (AWS Architecture Blog, "Exponential Backoff and Jitter"): thousands of
phones that lost the same node spread their returns over the whole window
instead of arriving together.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff_delays"]


def backoff_delays(
    *, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
) -> Iterator[float]:
    """An endless iterator of delays; start a new one after a success."""
    if base_s <= 0 or cap_s < base_s:
        raise ValueError("need 0 < base_s <= cap_s")
    draw = (rng or random.Random()).uniform
    attempt = 0
    while True:
        yield draw(0.0, min(cap_s, base_s * 2**attempt))
        if base_s * 2**attempt < cap_s:
            attempt += 1
