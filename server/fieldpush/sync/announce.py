"""Realtime ``record.changed`` events (step 4 of :mod:`fieldpush.sync.engine`).

A committed change is published to the record's scope: ``user:<scope user>``
and ``records:<team>`` (the channels its scope and team fields name):

- **a change of ``realtime`` fields** goes to the channels that named the
  record before and after: ``fields`` holds the changed realtime fields;
- **a record entering a scope** (its scope or team field changed, or it was
  created with realtime fields) goes to the channels it entered with the
  whole record (``"entered": true``; the fields every role that may own it
  reads), so a newly assigned engineer needs no pull to see the work order;
- **a record leaving a scope** goes to the channels it left as ``"removed":
  true`` (no fields), priority ``high``.

Batch data (sync class ``batch``, docs/sync.md) is never pushed: a record
type of that class announces nothing, and a record entering a scope carries
its core fields only.

The priority of a change is the most urgent of its realtime fields' (of the
whole record when it enters); ``critical`` ones are tracked like any critical
event, under the kind ``<type>.<value>`` of the value that made them critical
(``work_order.urgent``): the one definition of "urgent work order" in
``ack_deadlines_s`` gives their deadline, for published and synced ones alike
(else the deadline of the kind ``record.changed``). The device that made the
change does not get it back, and the author's ack of a tracked one is
recorded at once.

At most once: the change is committed before it is announced, and an event
the backend could not store is logged and dropped; phones get the change by
pull.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from fieldpush.backend.base import PublishRequest, PublishResult, Tracking
from fieldpush.errors import BackendUnavailable
from fieldpush.sync.commit import Change
from fieldpush.sync.mapping import Mappings, Side
from fieldpush.sync.rules import Actor, scope_of
from fieldpush.sync.schema import BATCH, CORE, PRIORITIES, RecordType
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


def _channels(owner: Any, team: Any) -> list[str]:
    named = (f"user:{owner}" if owner else None, f"records:{team}" if team else None)
    return [channel for channel in named if channel is not None and is_channel(channel)]


def _most_urgent(rtype: RecordType, values: dict[str, Any]) -> tuple[str, str | None]:
    """The most urgent priority of these values' realtime fields (``normal``
    when there is none), and the tracking kind ``<type>.<value>`` of the value
    that makes it critical (None when it is not)."""
    ranked = sorted(
        (PRIORITIES.index(rtype.fields[name].priority_of(value)), str(value))
        for name, value in values.items()
        if rtype.fields[name].sync == "realtime"
    )
    if not ranked:
        return Priority.NORMAL.value, None
    rank, value = ranked[0]
    priority = PRIORITIES[rank]
    return priority, (f"{rtype.name}.{value}" if priority == Priority.CRITICAL else None)


def _owner_fields(rtype: RecordType) -> frozenset[str]:
    """The fields every role that may own a record of ``rtype`` (read scope
    ``own``) reads; every role's when none reads only its own."""
    owners = [role for role, scope in rtype.read.items() if scope == "own"] or list(rtype.read)
    readable = [rtype.readable_fields(role) for role in owners]
    core = rtype.fields_of(frozenset({CORE}))
    return frozenset.intersection(core, *readable) if readable else frozenset()


class Announcer:
    """See the module docstring. ``deadline_s(kind)``: the ack deadline of a
    tracked event of ``kind`` (``ack_deadlines_s``, then the one of
    ``record.changed``, then the default)."""

    def __init__(
        self,
        publisher: Publisher,
        acked: AckRecorder,
        new_event_id: Callable[[], str],
        mappings: Mappings,
        *,
        deadline_s: Callable[[str], float],
    ) -> None:
        self._publisher = publisher
        self._acked = acked
        self._new_event_id = new_event_id
        self._mappings = mappings
        self._deadline_s = deadline_s
        #: Record type -> :func:`_owner_fields`, computed once per type.
        self._whole: dict[str, frozenset[str]] = {}

    async def announce(self, actor: Actor, change: Change) -> None:
        """Publish what ``change`` by ``actor`` means to the record's scope
        (module docstring). Never raises BackendUnavailable."""
        rtype, outcome, state = change.rtype, change.outcome, change.outcome.state
        if state is None or state.deleted is not None or rtype.sync == BATCH:
            return  # deletions and batch data reach phones by pull
        realtime = {
            name: new
            for name, (_, new) in outcome.changed.items()
            if rtype.fields[name].sync == "realtime"
        }
        now = _channels(*scope_of(rtype, state))
        if outcome.created:
            entered, staying, left = (now if realtime else []), [], []
        else:
            before = _channels(
                *(
                    outcome.changed[name][0] if name in outcome.changed else state.value(name)
                    for name in (rtype.scope, rtype.team)
                )
            )
            entered = [channel for channel in now if channel not in before]
            staying = [channel for channel in now if channel in before]
            left = [channel for channel in before if channel not in now]
        phone = self._mappings.of(Side.PHONE, rtype.name)
        base = {"type": rtype.name, "rid": change.rid}
        origin = {"user": actor.user, "device": actor.device}
        if entered:
            readable = self._whole.get(rtype.name)
            if readable is None:
                readable = self._whole[rtype.name] = _owner_fields(rtype)
            whole = {n: v for n, v in state.values().items() if n in readable}
            priority, kind = _most_urgent(rtype, state.values())
            data = {**base, "fields": phone.outbound(whole), "entered": True, "origin": origin}
            await self._publish(actor, change, entered, priority, kind, data)
        if staying and realtime:
            priority, kind = _most_urgent(rtype, realtime)
            data = {**base, "fields": phone.outbound(realtime), "origin": origin}
            await self._publish(actor, change, staying, priority, kind, data)
        if left:
            data = {**base, "removed": True, "origin": origin}
            await self._publish(actor, change, left, Priority.HIGH.value, None, data)

    async def _publish(
        self,
        actor: Actor,
        change: Change,
        channels: list[str],
        priority: str,
        kind: str | None,
        data: dict[str, Any],
    ) -> None:
        """One ``record.changed`` event; tracked under ``kind`` when critical."""
        event_id = self._new_event_id()
        tracking = None
        if kind is not None:
            tracking = Tracking(kind, round(self._deadline_s(kind) * 1000))
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
                change.rtype.name,
                change.rid,
            )
            return
        if tracking is not None and f"user:{actor.user}" in channels:
            # The author made the change: it needs no ack from them.
            await asyncio.gather(
                self._acked(actor.user, actor.device, [event_id]), return_exceptions=True
            )
