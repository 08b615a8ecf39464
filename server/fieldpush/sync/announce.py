"""Realtime ``record.changed`` events (step 4 of :mod:`fieldpush.sync.engine`).

A committed change of ``realtime`` fields is published to ``user:<scope user>``
and ``records:<team>`` with the most urgent priority of its fields
(``critical`` ones are tracked like any critical event, with the deadline of
the kind ``record.changed``). The device that made the change does not get it
back, and the author's ack of a tracked one is recorded at once.

At most once: the change is committed before it is announced, and an event
the backend could not store is logged and dropped; phones get the change by
pull.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from fieldpush.backend.base import PublishRequest, PublishResult, Tracking
from fieldpush.errors import BackendUnavailable
from fieldpush.sync.commit import Change
from fieldpush.sync.mapping import Mappings, Side
from fieldpush.sync.rules import Actor, scope_of
from fieldpush.sync.schema import PRIORITIES
from fieldpush_client.protocol import Priority, encode_body, is_channel

__all__ = ["EVENT_KIND", "AckRecorder", "Announcer", "Publisher"]

log = logging.getLogger("fieldpush.sync")

EVENT_KIND = "record.changed"


class Publisher(Protocol):
    """Stores an event in its channels' history and announces it
    (:meth:`fieldpush.backend.base.Backend.publish`)."""

    async def publish(self, request: PublishRequest) -> PublishResult:
        """Raises BackendUnavailable when the event is not known to be stored."""


class AckRecorder(Protocol):
    """Records acks of tracked events (:meth:`fieldpush.tracking.dispatch.Dispatch.acked`)."""

    def __call__(self, user: str, device: str, ids: list[str]) -> asyncio.Future[None]:
        """Done once recorded; fails with BackendUnavailable."""


class Announcer:
    """See the module docstring. ``ack_deadline_s``: of a tracked ``record.changed``."""

    def __init__(
        self,
        publisher: Publisher,
        acked: AckRecorder,
        new_event_id: Callable[[], str],
        mappings: Mappings,
        *,
        ack_deadline_s: float,
    ) -> None:
        self._publisher = publisher
        self._acked = acked
        self._new_event_id = new_event_id
        self._mappings = mappings
        self._ack_deadline_ms = round(ack_deadline_s * 1000)

    async def announce(self, actor: Actor, change: Change) -> None:
        """Publish ``change`` by ``actor`` if it changed ``realtime`` fields of a
        record that names a user or team. Never raises BackendUnavailable."""
        rtype, outcome = change.rtype, change.outcome
        if outcome.state is None:
            return
        realtime = {
            name: new
            for name, (_, new) in outcome.changed.items()
            if rtype.fields[name].sync == "realtime"
        }
        if not realtime:
            return
        owner, team = scope_of(rtype, outcome.state)
        named = (f"user:{owner}" if owner else None, f"records:{team}" if team else None)
        channels = [channel for channel in named if channel is not None and is_channel(channel)]
        if not channels:
            return
        priority = min(
            (rtype.fields[name].priority_of(value) for name, value in realtime.items()),
            key=PRIORITIES.index,
        )
        event_id = self._new_event_id()
        data = {
            "type": rtype.name,
            "rid": change.rid,
            "fields": self._mappings.of(Side.PHONE, rtype.name).outbound(realtime),
            "origin": {"user": actor.user, "device": actor.device},
        }
        critical = priority == Priority.CRITICAL
        tracking = Tracking(EVENT_KIND, self._ack_deadline_ms) if critical else None
        try:
            await self._publisher.publish(
                PublishRequest(
                    channels=tuple(channels),
                    event_id=event_id,
                    priority=priority,
                    body=encode_body(event_id, EVENT_KIND, priority, data),
                    tracking=tracking,
                    origin=(actor.user, actor.device),
                )
            )
        except BackendUnavailable:
            log.warning(
                "%s %s changed but its event was not published (backend unavailable); "
                "phones get the change by pull",
                rtype.name,
                change.rid,
            )
            return
        if tracking is not None and f"user:{actor.user}" in channels:
            # The author made the change: it needs no ack from them.
            await asyncio.gather(
                self._acked(actor.user, actor.device, [event_id]), return_exceptions=True
            )
