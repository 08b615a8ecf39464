"""Tracked events, receipts and presence in this process's memory (one node).

The same guarantees as the Redis versions (see :class:`~fieldpush.backend.base.Ledger`
and :class:`~fieldpush.backend.base.Presence`); every operation is synchronous
under the event loop, hence atomic. Records expire like Redis keys would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fieldpush.backend.base import (
    Due,
    PresenceEntry,
    Receipt,
    Receipts,
    ReceiptStep,
    ReceiptStepKind,
    Tracking,
)
from fieldpush.events.event import Event

__all__ = ["MemoryLedger", "MemoryPresence"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Recipient:
    channel: str
    delivered: tuple[int, str] | None = None
    acked: tuple[int, str] | None = None

    def receipt(self, user: str) -> Receipt:
        step = self.acked or self.delivered
        return Receipt(
            user=user,
            device=step[1] if step else None,
            delivered_at=self.delivered[0] if self.delivered else None,
            acked_at=self.acked[0] if self.acked else None,
        )


@dataclass(slots=True)
class _Tracked:
    kind: str
    published_at: int
    deadline_at: int
    events: dict[str, Event]  # channel -> the event as stored there
    recipients: dict[str, _Recipient] = field(default_factory=dict)
    claimed_until: int = 0


class MemoryLedger:
    """:class:`~fieldpush.backend.base.Ledger` in memory."""

    def __init__(self, *, ttl_ms: int, announce: Callable[[str, dict[str, object]], None]) -> None:
        """``announce(receipt id, data)`` publishes a ``receipt`` event to ``dispatch``."""
        self._ttl_ms = ttl_ms
        self._announce = announce
        self._tracked: dict[str, _Tracked] = {}  # in publish order
        self._audience: dict[str, set[str]] = {}
        self._pending: dict[str, dict[str, None]] = {}  # user -> event ids, ordered

    def track(self, event_id: str, tracking: Tracking, stored: list[Event], now: int) -> None:
        """Called by the memory backend's publish, in the same step as the store."""
        self._expire(now)
        deadline = now + tracking.ack_deadline_ms if tracking.ack_deadline_ms else 0
        tracked = self._tracked[event_id] = _Tracked(
            tracking.kind, now, deadline, {e.channel: e for e in stored}
        )
        for event in stored:
            kind, _, ident = event.channel.partition(":")
            users = {ident} if kind == "user" else self._audience.get(event.channel, set())
            for user in sorted(users):
                self._add_recipient(event_id, tracked, user, event.channel)

    def _add_recipient(self, event_id: str, tracked: _Tracked, user: str, channel: str) -> None:
        if user not in tracked.recipients:
            tracked.recipients[user] = _Recipient(channel)
            self._pending.setdefault(user, {})[event_id] = None

    def _expire(self, now: int) -> None:
        for event_id, tracked in list(self._tracked.items()):
            if tracked.published_at + self._ttl_ms > now:
                break
            del self._tracked[event_id]
            for user in tracked.recipients:
                self._pending.get(user, {}).pop(event_id, None)

    async def note_audience(self, pairs: list[tuple[str, str]]) -> None:
        for channel, user in pairs:
            self._audience.setdefault(channel, set()).add(user)

    def _recipient(self, event_id: str, user: str) -> tuple[_Tracked, _Recipient] | None:
        tracked = self._tracked.get(event_id)
        if tracked is None:
            return None
        if user not in tracked.recipients:  # a later member: add them
            self._add_recipient(event_id, tracked, user, next(iter(tracked.events)))
        return tracked, tracked.recipients[user]

    async def record(self, steps: list[ReceiptStep]) -> None:
        changed: dict[str, tuple[str, dict[str, Receipt]]] = {}  # event -> receipt id, changes
        kinds: dict[str, str] = {}
        for step in steps:
            found = self._recipient(step.event, step.user)
            if found is None:
                continue
            tracked, recipient = found
            mark = (step.ms, step.device)
            if step.step is ReceiptStepKind.ACKED and recipient.acked is None:
                recipient.acked = mark
                self._pending.get(step.user, {}).pop(step.event, None)
            elif step.step is ReceiptStepKind.DELIVERED and recipient.delivered is None:
                recipient.delivered = mark
            else:
                continue
            kinds[step.event] = tracked.kind
            receipts = changed.setdefault(step.event, (step.receipt_id, {}))[1]
            receipts[step.user] = recipient.receipt(step.user)
        for event_id, (receipt_id, receipts) in changed.items():
            self._announce(
                receipt_id,
                {
                    "event": event_id,
                    "kind": kinds[event_id],
                    "receipts": [r.as_dict() for _, r in sorted(receipts.items())],
                },
            )

    async def pending(self, user: str) -> list[Event]:
        self._expire(now_ms())
        events = []
        for event_id in self._pending.get(user, {}):
            tracked = self._tracked[event_id]
            events.append(tracked.events[tracked.recipients[user].channel])
        return events

    async def receipts(self, event_id: str) -> Receipts | None:
        self._expire(now_ms())
        tracked = self._tracked.get(event_id)
        if tracked is None:
            return None
        return Receipts(
            id=event_id,
            kind=tracked.kind,
            published_at=tracked.published_at,
            deadline_at=tracked.deadline_at or None,
            recipients=[r.receipt(u) for u, r in sorted(tracked.recipients.items())],
        )

    async def claim_due(self, lease_ms: int, limit: int) -> list[Due]:
        now = now_ms()
        due: list[Due] = []
        for event_id, tracked in self._tracked.items():
            if len(due) >= limit:
                break
            if not tracked.deadline_at or max(tracked.deadline_at, tracked.claimed_until) > now:
                continue
            unacked = [u for u, r in sorted(tracked.recipients.items()) if r.acked is None]
            if tracked.recipients and not unacked:
                tracked.deadline_at = 0  # everyone acked: settled
                continue
            tracked.claimed_until = now + lease_ms
            due.append(Due(event_id, tracked.kind, unacked))
        return due

    async def settle(self, event_id: str) -> None:
        tracked = self._tracked.get(event_id)
        if tracked is not None:
            tracked.deadline_at = 0


class MemoryPresence:
    """:class:`~fieldpush.backend.base.Presence` in memory, with the Redis
    backend's rule: an entry counts while its node's last :meth:`beat` is
    younger than its TTL and the node is not :meth:`gone`. A kick goes
    straight to the node's handler."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, PresenceEntry]] = {}
        self._channels: dict[str, dict[str, PresenceEntry]] = {}
        self._last_seen: dict[str, int] = {}
        #: node -> the monotonic time its last beat expires.
        self._beats: dict[str, float] = {}
        self._kicked: Callable[[str], None] | None = None

    async def join(self, entry: PresenceEntry, channels: list[str]) -> None:
        self._users.setdefault(entry.user, {})[entry.session] = entry
        for channel in channels:
            await self.subscribe(entry, channel)

    async def leave(self, entry: PresenceEntry, channels: list[str]) -> None:
        sessions = self._users.get(entry.user, {})
        sessions.pop(entry.session, None)
        if not sessions:
            self._users.pop(entry.user, None)
        for channel in channels:
            await self.unsubscribe(entry, channel)
        self._last_seen[entry.user] = now_ms()

    async def subscribe(self, entry: PresenceEntry, channel: str) -> None:
        self._channels.setdefault(channel, {})[entry.session] = entry

    async def unsubscribe(self, entry: PresenceEntry, channel: str) -> None:
        sessions = self._channels.get(channel, {})
        sessions.pop(entry.session, None)
        if not sessions:
            self._channels.pop(channel, None)

    async def beat(self, node: str, ttl_ms: int) -> None:
        self._beats[node] = time.monotonic() + ttl_ms / 1000

    async def gone(self, node: str) -> None:
        self._beats.pop(node, None)

    def _live(self, entries: dict[str, PresenceEntry]) -> list[PresenceEntry]:
        now, clock = now_ms(), time.monotonic()
        alive = {node for node, expires in self._beats.items() if expires > clock}
        return sorted(
            (
                PresenceEntry(e.user, e.session, e.device, e.node, e.since, now)
                for e in entries.values()
                if e.node in alive
            ),
            key=lambda e: (e.since, e.session),
        )

    async def sessions_of(self, user: str) -> list[PresenceEntry]:
        return self._live(self._users.get(user, {}))

    async def of_user(self, user: str) -> tuple[list[PresenceEntry], int | None]:
        entries = await self.sessions_of(user)
        return entries, entries[0].last_seen if entries else self._last_seen.get(user)

    async def of_channel(self, channel: str) -> list[PresenceEntry]:
        return self._live(self._channels.get(channel, {}))

    async def kick(self, node: str, session: str) -> None:
        if self._kicked is not None:
            self._kicked(session)

    def on_kick(self, node: str, handler: Callable[[str], None]) -> None:
        self._kicked = handler
