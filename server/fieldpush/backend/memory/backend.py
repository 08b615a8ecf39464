"""The embedded backend: everything in this process's memory.

For a single node (development, tests, small installations). History is lost
when the process exits; a restarted node starts every channel in a new epoch,
so phones that resume with an old offset get ``recovered: false`` rather than
a silent gap. Publishing is synchronous under the event loop, which makes each
publish atomic across its channels without a lock.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from fieldpush.backend.base import (
    BackendHealth,
    EventSink,
    History,
    PublishRequest,
    PublishResult,
    SessionOpened,
    SessionOpening,
)
from fieldpush.backend.memory.accounts import MemoryAccounts
from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.backend.memory.devices import MemoryDevices
from fieldpush.backend.memory.directory import MemoryDirectory
from fieldpush.backend.memory.ledger import MemoryLedger, MemoryPresence
from fieldpush.backend.memory.records import MemoryRecords
from fieldpush.backend.memory.webhook import MemoryWebhook
from fieldpush.errors import IdempotencyConflict
from fieldpush.events.event import Event, encode_body
from fieldpush.events.offsets import Offset, can_recover, new_epoch

__all__ = ["MemoryBackend"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Channel:
    epoch: str = field(default_factory=new_epoch)
    ms: int = 0
    seq: int = 0
    events: deque[Event] = field(default_factory=deque)

    @property
    def top(self) -> Offset:
        return Offset(self.epoch, self.ms, self.seq)


class MemoryBackend:
    """Single-process backend; see the module docstring."""

    name = "memory"

    def __init__(
        self,
        *,
        history_max_events: int,
        history_max_age_s: float,
        idempotency_ttl_s: float,
        receipts_ttl_s: float = 7 * 86400,
        sync_results_ttl_s: float = 7 * 86400,
        sync_log_max_entries: int = 1_000_000,
        sync_log_max_age_s: float = 30 * 86400,
        audit_file: str | None = None,
    ) -> None:
        self._max_events = history_max_events
        self._max_age_ms = int(history_max_age_s * 1000)
        self._idempotency_ttl_ms = int(idempotency_ttl_s * 1000)
        self._channels: dict[str, _Channel] = {}
        self._idempotency: dict[tuple[str, str], tuple[int, str, PublishResult]] = {}
        self._sink: EventSink | None = None
        self.ledger = MemoryLedger(ttl_ms=int(receipts_ttl_s * 1000), announce=self._announce)
        self.presence = MemoryPresence()
        self.records = MemoryRecords(
            results_ttl_s=sync_results_ttl_s,
            log_max_entries=sync_log_max_entries,
            log_max_age_s=sync_log_max_age_s,
        )
        self.directory = MemoryDirectory()
        self.accounts = MemoryAccounts()
        self.devices = MemoryDevices(announce=self.accounts.wiping)
        self.audit = MemoryAudit(audit_file)
        self.webhook = MemoryWebhook()
        self.audit.load()  # a file that does not verify refuses the start here

    async def start(self, sink: EventSink) -> None:
        self.audit.load()
        self._sink = sink

    async def close(self) -> None:
        self.audit.close()
        self._sink = None

    def _channel(self, name: str, now_ms: int) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel()
        events = channel.events
        horizon = now_ms - self._max_age_ms
        while events and (len(events) > self._max_events or events[0].ms < horizon):
            events.popleft()
        return channel

    async def publish(self, request: PublishRequest) -> PublishResult:
        return self._publish(request)

    def _announce(self, receipt_id: str, data: dict[str, object]) -> None:
        """Publish a ``receipt`` event to ``dispatch`` (for the ledger)."""
        body = encode_body(receipt_id, "receipt", "high", data)
        self._publish(PublishRequest(("dispatch",), receipt_id, "high", body))

    def _publish(self, request: PublishRequest) -> PublishResult:
        """Store and announce; synchronous, hence atomic under the event loop."""
        now_ms = _now_ms()
        key = None
        if request.idempotency is not None:
            key = (request.idempotency.publisher, request.idempotency.key)
            self._expire_idempotency(now_ms)
            seen = self._idempotency.get(key)
            if seen is not None:
                _, fingerprint, result = seen
                if fingerprint != request.idempotency.fingerprint:
                    raise IdempotencyConflict(request.idempotency.key)
                return PublishResult(result.id, result.offsets, duplicate=True)
        stored = []
        for name in request.channels:
            channel = self._channel(name, now_ms)
            channel.ms = max(channel.ms, now_ms)
            channel.seq += 1
            event = Event(
                name,
                channel.epoch,
                channel.ms,
                channel.seq,
                request.priority,
                request.body,
                request.origin,
            )
            channel.events.append(event)
            if len(channel.events) > self._max_events:
                channel.events.popleft()
            stored.append(event)
        result = PublishResult(request.event_id, {e.channel: e.offset for e in stored})
        if request.tracking is not None:
            self.ledger.track(request.event_id, request.tracking, stored, now_ms)
        if key is not None and request.idempotency is not None:
            expires = now_ms + self._idempotency_ttl_ms
            self._idempotency[key] = (expires, request.idempotency.fingerprint, result)
        if self._sink is not None:
            for event in stored:
                self._sink.on_event(event)
        return result

    def _expire_idempotency(self, now_ms: int) -> None:
        # Entries are inserted in expiry order (constant TTL), so expired ones lead.
        table = self._idempotency
        for key, (expires, _, _) in list(table.items()):
            if expires > now_ms:
                break
            del table[key]

    async def read(self, channel: str, since: Offset | None, limit: int) -> History:
        state = self._channel(channel, _now_ms())
        top = state.top
        if since is None:
            return History(top=top, recovered=True)
        after = [e for e in state.events if e.seq > since.seq] if since.epoch == top.epoch else []
        first = after[0].seq if after else None
        if not can_recover(since, top, first):
            return History(top=top, recovered=False)
        return History(top=top, recovered=True, events=after[:limit])

    async def open_session(self, opening: SessionOpening) -> SessionOpened:
        """See :meth:`~fieldpush.backend.base.SessionOpener.open_session`; atomic
        because nothing in it waits."""
        entry = opening.entry
        wiped = self.devices.wiped(entry.user, entry.device)
        if wiped is not None:  # refused before the cap: nothing written
            return SessionOpened(admitted=False, others=[], histories=[], pending=[], device=wiped)
        others = await self.presence.sessions_of(entry.user)
        if opening.refuse_over_cap and opening.cap and len(others) + 1 > opening.cap:
            return SessionOpened(admitted=False, others=others, histories=[], pending=[])
        await self.presence.join(entry, opening.channels)
        await self.ledger.note_audience([(channel, entry.user) for channel in opening.audience])
        histories = [await self.read(r.channel, r.since, r.limit) for r in opening.reads]
        pending = await self.ledger.pending(entry.user)
        device = self.devices.seen(
            entry.user,
            entry.device,
            node=entry.node,
            app=opening.app,
            at=_now_ms(),
            max_devices=opening.max_devices,
        )
        return SessionOpened(
            admitted=True, others=others, histories=histories, pending=pending, device=device
        )

    async def subscribe(self, channel: str) -> None:
        """Nothing to do: every publish in this process reaches the sink."""

    async def unsubscribe(self, channel: str) -> None:
        """Nothing to do."""

    @property
    def health(self) -> BackendHealth:
        """Always up: the state is in this process."""
        return BackendHealth(up=True)

    async def ready(self) -> bool:
        return True
