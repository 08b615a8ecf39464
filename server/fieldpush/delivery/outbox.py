"""A connection's outbox: the priority rules of delivery, without I/O.

Priorities (docs/protocol.md "Priorities")
    ``critical`` and ``high`` events are written at the end of the current
    event-loop iteration; ``normal`` ones too, unless this phone got a write
    less than ``coalesce_ms`` ago: then at the end of the node's coalescing
    window (or earlier, with an urgent one), so that a burst to one phone
    shares frames while a lone event is not delayed; ``low`` ones are held
    until the next non-low event (and go just ahead of it), until the ``low``
    poll interval passed or until more than ``max_held_events`` are held.
    ``critical`` events are written at most once per connection, whether
    they come from a replay, the pending list or the live feed; each first
    write is reported to ``on_critical`` (for the receipts).

The outbox decides *when* to write and *what* goes into one frame; it never
awaits. The flusher (its :class:`Scheduler`) calls :meth:`Outbox.flush`,
which hands the frame to a :class:`FrameSink` (the connection), so the rules
are tested with a fake scheduler and a list as the sink.

The hot path is :meth:`Outbox.push` (a list append) then :meth:`Outbox.flush`:
one event is written as its shared, pre-encoded ``event`` frame; several are
coalesced into one ``events`` frame.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Final, Protocol

from fieldpush.events.event import Event, events_frame

__all__ = ["Dirty", "FrameSink", "Outbox", "Scheduler", "TimerHandle"]


class Dirty(IntEnum):
    """Whether, and how soon, an outbox waits for the flusher."""

    #: Nothing to write.
    CLEAN = 0
    #: Waits for the end of the coalescing window.
    WINDOW = 1
    #: Written at the end of this event-loop iteration.
    NOW = 2


_CLEAN: Final = Dirty.CLEAN
_WINDOW: Final = Dirty.WINDOW
_NOW: Final = Dirty.NOW


class TimerHandle(Protocol):
    def cancel(self) -> None:
        """The callback will not run."""


class Scheduler(Protocol):
    """The flusher as an outbox sees it (:class:`~fieldpush.delivery.flusher.Flusher`)."""

    def coalesces(self, flushed_at: float) -> bool:
        """Whether a ``normal`` event waits for the window (a write was recent)."""

    def add(self, outbox: Outbox) -> None:
        """Flush ``outbox`` at the end of this event-loop iteration."""

    def add_later(self, outbox: Outbox) -> None:
        """Flush ``outbox`` at the end of the coalescing window."""

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once after ``delay_s``."""


class FrameSink(Protocol):
    """Where an outbox writes its frames: the connection."""

    @property
    def closing(self) -> bool:
        """Once true, nothing more is written."""

    def write(self, data: bytes) -> None:
        """Write one or more complete frames (never blocks)."""


class Outbox:
    """The events waiting to be written to one connection; see the module docstring."""

    __slots__ = (
        "_events",
        "_flusher",
        "_held_timer",
        "_low_interval_s",
        "_max_held",
        "_on_critical",
        "_sink",
        "binary",
        "critical_sent",
        "dirty",
        "flushed_at",
        "held",
    )

    def __init__(
        self,
        sink: FrameSink,
        binary: bool,
        flusher: Scheduler,
        *,
        on_critical: Callable[[str], None],
        low_interval_s: float,
        max_held: int,
    ) -> None:
        self._sink = sink
        self.binary = binary
        self._flusher = flusher
        self._on_critical = on_critical
        self._low_interval_s = low_interval_s
        self._max_held = max_held
        self._events: list[Event] = []
        self.dirty = _CLEAN
        #: The flusher's clock when events were last written; never yet: minus
        #: infinity (``time.monotonic()`` has no fixed origin, and is small on a
        #: freshly booted machine).
        self.flushed_at = float("-inf")
        #: ``low`` events held back, and the timer that releases them.
        self.held: list[Event] | None = None
        self._held_timer: TimerHandle | None = None
        #: Ids of the critical events written (or being written) on this connection.
        self.critical_sent: set[str] = set()

    @property
    def pending(self) -> int:
        """How many events wait for the flusher (held ``low`` ones not counted)."""
        return len(self._events)

    def push(self, event: Event) -> None:
        """Queue a live event for writing, by its priority (module docstring)."""
        priority = event.priority
        if priority == "normal" and self.held is None:  # the common case, first
            self._events.append(event)
            if not self.dirty:
                self._schedule(self._flusher.coalesces(self.flushed_at))
            return
        if priority == "low":
            self._hold(event)
            return
        if priority == "critical" and not self.first_critical(event):
            return
        if self.held is not None:
            self._release_held()
        self._events.append(event)
        if priority != "normal":
            if self.dirty is not _NOW:
                self._schedule(coalesce=False)
        elif not self.dirty:
            self._schedule(self._flusher.coalesces(self.flushed_at))

    def _schedule(self, coalesce: bool) -> None:
        """Have the flusher write the events: at the end of the coalescing
        window, or (not ``coalesce``) at the end of this event-loop iteration."""
        if coalesce:
            self.dirty = _WINDOW
            self._flusher.add_later(self)
        else:
            self.dirty = _NOW
            self._flusher.add(self)

    def first_critical(self, event: Event) -> bool:
        """Whether a critical event is new on this connection; reports its delivery."""
        event_id = event.id
        if event_id in self.critical_sent:
            return False
        self.critical_sent.add(event_id)
        self._on_critical(event_id)
        return True

    def replayable(self, page: list[Event], origin: tuple[str, str] | None) -> list[Event]:
        """The events of a replay page to write: critical ones not written yet
        on this connection (reported as delivered), and none made by ``origin``."""
        if any(event.priority == "critical" for event in page):
            page = [e for e in page if e.priority != "critical" or self.first_critical(e)]
        if any(event.origin is not None for event in page):
            page = [e for e in page if e.origin is None or e.origin != origin]
        return page

    def _hold(self, event: Event) -> None:
        if self.held is None:
            self.held = [event]
            self._held_timer = self._flusher.call_later(self._low_interval_s, self._flush_held)
        else:
            self.held.append(event)
            if len(self.held) > self._max_held:
                self._flush_held()

    def _release_held(self) -> None:
        """Move the held ``low`` events into the outbox (ahead of what follows)."""
        held, self.held = self.held or [], None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._events.extend(held)

    def _flush_held(self) -> None:
        """The ``low`` interval passed (or too many are held): write them now."""
        self._held_timer = None
        self._release_held()
        if self.dirty is not _NOW:
            self._schedule(coalesce=False)

    def flush(self, written: list[Event]) -> int:
        """Write the pending events in one frame, append them to ``written``
        (the flusher's metrics); return how many. Called by the flusher.

        The list is reused (cleared, not replaced): one allocation less per
        delivery. Nothing can append to it while the frame is written."""
        events = self._events
        self.dirty = _CLEAN
        count = len(events)
        if not count:
            return 0
        if self._sink.closing:
            events.clear()
            return 0
        if count == 1:
            event = events[0]
            self._sink.write(event.frames[self.binary] or event.frame(self.binary))
            written.append(event)
        else:
            self._sink.write(events_frame(events, self.binary))
            written.extend(events)
        events.clear()
        return count

    def discard(self) -> None:
        """The connection is gone: drop what waits, stop the ``low`` timer."""
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self.held = None
        self._events.clear()
