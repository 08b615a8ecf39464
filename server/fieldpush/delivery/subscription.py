"""A session's subscription to one channel: the hub's subscriber for that phone.

Guarantees (per connection)
    Events of a channel are handed to the outbox in offset order, each at
    most once. A subscription with an offset first writes every retained
    event after it and only then the live events that arrived meanwhile;
    nothing is lost between the two because the live feed is attached before
    history is read and both are de-duplicated by ``seq``. Record changes
    made by the connection's own ``(user, device)`` are not echoed to it.
"""

from __future__ import annotations

from collections.abc import Callable

from fieldpush.events.event import Event

__all__ = ["Subscription"]


class Subscription:
    """A :class:`~fieldpush.delivery.hub.Subscriber` that feeds one outbox."""

    __slots__ = ("_lost", "_push", "channel", "last_seq", "origin", "replaying")

    def __init__(
        self,
        channel: str,
        push: Callable[[Event], None],
        origin: tuple[str, str] | None,
        lost: Callable[[str], None],
    ) -> None:
        self.channel = channel
        #: The outbox's push, bound once: the hot path makes one call per event.
        self._push = push
        #: ``(user, device)`` of the connection: its own record changes are skipped.
        self.origin = origin
        self._lost = lost
        #: ``seq`` of the last event written (or skipped as already known).
        self.last_seq = 0
        #: Live events held back while history is replayed; ``None`` when live.
        self.replaying: list[Event] | None = []

    def deliver(self, event: Event) -> None:
        """The hot path: one call per event per phone, a list append at most."""
        if self.replaying is not None:
            self.replaying.append(event)
        elif event.seq > self.last_seq:
            self.last_seq = event.seq
            if event.origin is None or event.origin != self.origin:
                self._push(event)

    def feed_lost(self, channel: str) -> None:
        self._lost(channel)

    def go_live(self) -> None:
        """End the replay: pass on the live events held back, skipping known ones."""
        held, self.replaying = self.replaying or [], None
        for event in held:
            self.deliver(event)
