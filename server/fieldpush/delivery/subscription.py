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

from fieldpush.backend.base import History
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset

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

    def begin(
        self, since: Offset | None, history: History | None, live: Offset
    ) -> tuple[Offset, bool, list[Event]]:
        """Settle where this subscription starts, from the client's offset
        ``since``, the ``history`` read after ``since`` once the feed was
        subscribed, and the feed's position ``live`` (events after it come
        live). ``history`` is None when the client gave no offset; ``since``
        is None with a history when the client's offset is not one of ours.

        Returns the offset to report (the newer of the read's top and ``live``,
        so that the replay reaches what the feed passes on), whether the
        client's offset was recovered, and the first page to replay; sets
        :attr:`last_seq`. A feed in another epoch than the read (the history
        was reset in between) means ``recovered: false`` from the feed's position.
        """
        if history is None:
            self.last_seq = live.seq
            return live, True, []
        top = history.top
        if live.epoch != top.epoch:
            self.last_seq = live.seq
            return live, False, []
        if live.seq > top.seq:
            top = live
        if since is None or not history.recovered:
            self.last_seq = top.seq
            return top, False, []
        self.last_seq = since.seq
        return top, True, history.events

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
