"""Long-polling: the same events from the same history, for phones without a socket.

``POST /v1/poll`` (docs/protocol.md section 2). A poll reads each channel after the
given offset; when nothing is new it waits, up to ``wait_s``, for a live event
on any of its channels, then reads again. The waiter is attached to the hub
*before* the first read, so an event published between the read and the wait
still wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from fieldpush.backend.base import HistoryReader
from fieldpush.delivery.hub import Hub
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset
from fieldpush.settings import Settings

__all__ = ["PollSources", "poll"]


class DeliveryRecorder(Protocol):
    def delivered(self, event_id: str, user: str, device: str) -> None:
        """A tracked event reached a device of ``user`` (receipts)."""


class PollSources(Protocol):
    """What a poll reads and reports to (the node has them all)."""

    @property
    def hub(self) -> Hub: ...

    @property
    def backend(self) -> HistoryReader: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def dispatch(self) -> DeliveryRecorder: ...


class _Waiter:
    """A hub subscriber that only notes that something arrived."""

    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken = asyncio.Event()

    def deliver(self, event: Event) -> None:
        self.woken.set()

    def feed_lost(self, channel: str) -> None:
        self.woken.set()


async def poll(
    node: PollSources, subs: dict[str, str | None], wait_s: float, reader: tuple[str, str]
) -> dict[str, Any]:
    """Events after each channel's offset; waits up to ``wait_s`` when there are none.

    ``reader`` is the polling ``(user, device)``: critical events returned count
    as delivered to it (receipts).

    Returns ``{"events": [...], "offsets": {channel: next offset}, "recovered":
    {channel: bool}}``. Raises ``BackendUnavailable``.
    """
    hub = node.hub
    waiter = _Waiter()
    attached: list[str] = []
    try:
        if wait_s > 0:
            for channel in subs:
                await hub.attach(channel, waiter)
                attached.append(channel)
        positions: dict[str, Offset | None] = {}
        recovered: dict[str, bool] = {}
        offsets: dict[str, str] = {}
        events: list[Event] = []
        for channel, since_text in subs.items():
            since = Offset.parse(since_text) if since_text is not None else None
            history = await node.backend.read(channel, since, node.settings.replay_page_events)
            ok = since_text is None or (since is not None and history.recovered)
            recovered[channel] = ok
            start = since if ok and since is not None else history.top
            positions[channel] = start
            events.extend(history.events if ok else [])
            offsets[channel] = str(history.events[-1].position if ok and history.events else start)
        if not events and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.woken.wait(), wait_s)
            for channel in subs:
                history = await node.backend.read(
                    channel, positions[channel], node.settings.replay_page_events
                )
                if history.recovered and history.events:
                    events.extend(history.events)
                    offsets[channel] = history.events[-1].offset
        for event in events:
            if event.priority == "critical":
                node.dispatch.delivered(event.id, *reader)
        return {
            "events": [event.as_dict() for event in events],
            "offsets": offsets,
            "recovered": recovered,
        }
    finally:
        for channel in attached:
            hub.detach(channel, waiter)
