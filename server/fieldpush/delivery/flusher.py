"""The node's flusher: writes the sessions' pending events in batches.

An outbox registers when it goes from empty to non-empty: with
:meth:`Flusher.add` it is flushed at the end of this event-loop iteration, so
events that arrive together (one Redis read) still share a frame; with
:meth:`Flusher.add_later` at the end of the node's current coalescing window,
which one timer serves for every session. Outboxes use the window for
``normal`` events that follow a write to them within ``window_s``
(:meth:`Flusher.coalesces`): a burst shares frames, a lone event goes at
once. An urgent event for an outbox that waits for the window takes its
waiting events along at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from fieldpush.events.event import Event
from fieldpush.metrics import Metrics

__all__ = ["Flushable", "Flusher"]


class Flushable(Protocol):
    """What the flusher writes: a session's outbox."""

    #: The flusher's clock when its events were last written.
    flushed_at: float

    def flush(self, written: list[Event]) -> int:
        """Write the pending events, appending them to ``written``; return how many."""


class Flusher:
    """See the module docstring. One per node; also the outboxes' timer source."""

    __slots__ = (
        "_later",
        "_later_handle",
        "_loop_time",
        "_metrics",
        "_now",
        "_now_scheduled",
        "window_s",
    )

    def __init__(self, metrics: Metrics, window_s: float) -> None:
        self._now: list[Flushable] = []
        self._later: list[Flushable] = []
        self._now_scheduled = False
        self._later_handle: asyncio.TimerHandle | None = None
        self._metrics = metrics
        self.window_s = window_s
        self._loop_time = time.monotonic

    def coalesces(self, flushed_at: float) -> bool:
        """Whether a ``normal`` event for an outbox last written at ``flushed_at``
        waits for the window (it had a write less than ``window_s`` ago)."""
        return self._loop_time() - flushed_at < self.window_s

    def add(self, outbox: Flushable) -> None:
        """Flush ``outbox`` at the end of this event-loop iteration."""
        self._now.append(outbox)
        if not self._now_scheduled:
            self._now_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def add_later(self, outbox: Flushable) -> None:
        """Flush ``outbox`` at the end of the current coalescing window."""
        self._later.append(outbox)
        if self._later_handle is None:
            self._later_handle = asyncio.get_running_loop().call_later(
                self.window_s, self._flush_later
            )

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Run ``callback`` after ``delay_s`` (the release of held ``low`` events)."""
        return asyncio.get_running_loop().call_later(delay_s, callback)

    def _flush_now(self) -> None:
        dirty, self._now = self._now, []
        self._now_scheduled = False
        self._flush(dirty)

    def _flush_later(self) -> None:
        dirty, self._later = self._later, []
        self._later_handle = None
        self._flush(dirty)

    def _flush(self, dirty: list[Flushable]) -> None:
        frames = 0
        now = self._loop_time()
        written: list[Event] = []
        for outbox in dirty:
            if outbox.flush(written):
                outbox.flushed_at = now
                frames += 1
        metrics = self._metrics
        metrics.frames_written += frames
        if written:
            metrics.deliveries(written, time.time())
