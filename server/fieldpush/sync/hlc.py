"""Hybrid logical clock stamps (docs/protocol.md section 3, docs/sync.md "Clock guarantees").

A :class:`Stamp` is ``(wall_ms, counter, device)``; stamps compare as tuples,
so two edits made at the same ``[wall_ms, counter]`` are ordered by device id
and every node orders every pair of edits the same way.

A device's clock may be wrong, and a token holder may lie. An edit cannot
have been made after the server received it, so :func:`clamp` bounds a
device's stamp to the server's wall clock at receipt: whatever a device
sends, no stored stamp is later than the moment its mutation arrived.
:class:`HybridClock` stamps the server's own writes (the CRM's) after every
stamp it has issued or observed, and, because it observes only clamped
stamps, never ahead of the greatest reading of its node's wall clock so far
(ahead of the current one only if that clock stepped back).
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


def clamp(stamp: Stamp, received_ms: int) -> Stamp:
    """``stamp``, or, when it is later than ``received_ms`` (the server's wall
    clock when the mutation arrived), ``received_ms`` with its counter and
    device kept (so one device's edits keep their order within that ms)."""
    if stamp.wall_ms <= received_ms:
        return stamp
    return Stamp(received_ms, stamp.counter, stamp.device)


class HybridClock:
    """The server's HLC: :meth:`now` is strictly after every stamp it issued
    or :meth:`observe`\\ d, and never behind the wall clock. Given only stamps
    :func:`clamp`\\ ed to a reading of :meth:`wall_ms`, its wall part is never
    ahead of the greatest reading so far: no number of device stamps moves it
    into the future."""

    __slots__ = ("_counter", "_wall", "_wall_ms", "device")

    def __init__(self, device: str, wall_ms: Callable[[], int] | None = None) -> None:
        self.device = device
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._wall = 0
        self._counter = 0

    def wall_ms(self) -> int:
        return self._wall_ms()

    def observe(self, stamp: Stamp) -> None:
        """Move past ``stamp``: an edit the node stored, clamped to its receipt."""
        self._wall, self._counter = max((self._wall, self._counter), (stamp.wall_ms, stamp.counter))

    def now(self) -> Stamp:
        wall = self._wall_ms()
        if wall > self._wall:
            self._wall, self._counter = wall, 0
        else:
            self._counter += 1
        return Stamp(self._wall, self._counter, self.device)
