"""Hybrid logical clock stamps (docs/protocol.md section 3).

A :class:`Stamp` is ``(wall_ms, counter, device)``; stamps compare as tuples,
so two edits made at the same ``[wall_ms, counter]`` are ordered by device id
and every node orders every pair of edits the same way.

A device's clock may be wrong. :func:`clamp` bounds a stamp to at most
``max_skew_ms`` ahead of the server's wall clock, so an edit from a phone whose
clock runs a year ahead wins for at most that long, not forever.
:class:`HybridClock` stamps the server's own writes (the CRM's) after every
stamp it has seen, so a CRM write is never ordered before an edit the server
already accepted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["HybridClock", "Stamp", "clamp"]


class Stamp(NamedTuple):
    """When an edit was made: compared as ``(wall_ms, counter, device)``."""

    wall_ms: int
    counter: int
    device: str


def clamp(stamp: Stamp, now_ms: int, max_skew_ms: int) -> Stamp:
    """``stamp``, or the latest stamp allowed at ``now_ms`` when it is further
    ahead than ``max_skew_ms`` (its counter and device are kept)."""
    limit = now_ms + max_skew_ms
    if stamp.wall_ms <= limit:
        return stamp
    return Stamp(limit, stamp.counter, stamp.device)


class HybridClock:
    """The server's HLC: :meth:`now` is strictly after every stamp it issued
    or :meth:`observe`\\ d, and never behind the wall clock."""

    __slots__ = ("_counter", "_wall", "_wall_ms", "device")

    def __init__(self, device: str, wall_ms: Callable[[], int] | None = None) -> None:
        self.device = device
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._wall = 0
        self._counter = 0

    def wall_ms(self) -> int:
        return self._wall_ms()

    def observe(self, stamp: Stamp) -> None:
        """Move past ``stamp`` (an accepted, already clamped edit)."""
        self._wall, self._counter = max((self._wall, self._counter), (stamp.wall_ms, stamp.counter))

    def now(self) -> Stamp:
        wall = self._wall_ms()
        if wall > self._wall:
            self._wall, self._counter = wall, 0
        else:
            self._counter += 1
        return Stamp(self._wall, self._counter, self.device)
