"""Tracked events, receipts and presence on Redis, shared by every node.

Ledger keys (``<p>`` is the key prefix):

- ``<p>:crit:<event id>`` hash, written by ``publish.lua`` with the event:
  ``k`` kind, ``t`` publish ms, ``dl`` deadline ms (0: none), ``b`` body,
  ``og`` origin token (only for an event with an origin), ``o:<channel>``
  offset per channel, ``r:<user>`` the channel through which
  each recipient receives it, then ``d:<user>`` / ``a:<user>`` =
  ``<ms> <device>`` of the user's first delivery and first ack. Expires
  ``receipts_ttl_s`` after the publish.
- ``<p>:pend:<user>`` sorted set of the user's unacked tracked events (score:
  publish ms).
- ``<p>:deadlines`` sorted set of tracked events by deadline; ``claim.lua``
  leases due ones to one node at a time.
- ``<p>:aud:<channel>`` set of the users known to receive a non-user channel.

Presence keys:

- ``<p>:pres:u:<user>`` hash: session -> JSON ``[node, device, since]``;
- ``<p>:pres:c:<channel>`` hash: session -> JSON ``[user, node, device, since]``;
- ``<p>:pres:n:<node>`` the node's last heartbeat (ms), expiring after the
  presence TTL: an entry counts only while its node's key exists, and is
  removed by the first read that finds its node gone;
- ``<p>:pres:seen:<user>`` when the user's last session closed (ms).
- ``<p>:ctl:<node>`` pub/sub: session ids the node must close (``kick``).

Every multi-step change is one Lua script; the keys it touches depend on the
data (recipients), so like ``publish.lua`` this targets a single Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fieldpush.backend.base import (
    Due,
    PresenceEntry,
    Receipt,
    Receipts,
    ReceiptStep,
    ReceiptStepKind,
)
from fieldpush.backend.redis.client import RedisClient, Script
from fieldpush.events.event import Event, decode_origin
from fieldpush.events.offsets import Offset, new_epoch

__all__ = [
    "RedisLedger",
    "RedisPresence",
    "live_entries",
    "pending_events",
    "presence_values",
    "script",
]

#: How long a user's "last seen" is kept after their last session closed.
LAST_SEEN_TTL_MS = 30 * 86400 * 1000


def script(name: str, *preludes: str) -> Script:
    """A Lua script shipped in this package, after the ``preludes`` (shared
    functions, e.g. ``append.lua``)."""
    folder = files("fieldpush.backend.redis").joinpath("lua")
    return Script("\n".join(folder.joinpath(part).read_text() for part in (*preludes, name)))


def _step(raw: bytes | None) -> tuple[int, str] | None:
    """``b'<ms> <device>'`` -> ``(ms, device)``."""
    if not raw:
        return None
    ms, _, device = raw.decode().partition(" ")
    return int(ms), device


def _receipt(user: str, delivered: bytes | None, acked: bytes | None) -> Receipt:
    d, a = _step(delivered), _step(acked)
    step = a or d
    return Receipt(
        user=user,
        device=step[1] if step else None,
        delivered_at=d[0] if d else None,
        acked_at=a[0] if a else None,
    )


def pending_events(reply: list[list[bytes]]) -> list[Event]:
    """The events of a ``pending_events`` (pending_events.lua) answer."""
    events = []
    for _, channel, offset, body, origin in reply:
        position = Offset.parse(offset.decode())
        assert position is not None  # written by publish.lua
        events.append(
            Event(
                channel.decode(),
                position.epoch,
                position.ms,
                position.seq,
                "critical",
                body,
                decode_origin(origin) if origin else None,
            )
        )
    return events


def presence_values(entry: PresenceEntry) -> tuple[str, str]:
    """The entry's value in the user hash and in a channel hash (the same JSON
    list with the user first): one encoding for both."""
    value = json.dumps([entry.node, entry.device, entry.since])
    return value, f"[{json.dumps(entry.user)}, {value[1:]}"


def live_entries(user: str, raw: list[bytes]) -> list[PresenceEntry]:
    """The entries of a user hash from ``session, value, beat`` triples (the
    sessions of live nodes, with their node's last beat), oldest first."""
    entries = []
    for session, value, beat in zip(raw[::3], raw[1::3], raw[2::3], strict=True):
        node, device, since = json.loads(value)
        entries.append(
            PresenceEntry(user, session.decode(), device, node, since, max(since, int(beat)))
        )
    entries.sort(key=lambda e: (e.since, e.session))
    return entries


class RedisLedger:
    """:class:`~fieldpush.backend.base.Ledger` on Redis; see the module docstring."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        *,
        dispatch: tuple[str, str, bytes],
        history: tuple[int, int, int],
    ) -> None:
        """``dispatch``: the meta key, stream key and pub/sub name of the
        ``dispatch`` channel; ``history``: its bounds (max events, max age and
        meta TTL in ms), where receipts are published."""
        self._client = client
        self._prefix = prefix
        self._dispatch = dispatch
        self._history = history
        self._receipt = script("receipt.lua", "append.lua")
        self._claim = script("claim.lua")
        self._pending = script("pending.lua", "pending_events.lua")

    async def note_audience(self, pairs: list[tuple[str, str]]) -> None:
        prefix = self._prefix
        await self._client.pipeline(
            [(b"SADD", f"{prefix}:aud:{channel}", user) for channel, user in pairs]
        )

    async def record(self, steps: list[ReceiptStep]) -> None:
        if not steps:
            return
        args: list[Any] = [self._prefix, *self._history, *self._dispatch, new_epoch()]
        for step in steps:
            kind = "a" if step.step is ReceiptStepKind.ACKED else "d"
            args += (kind, step.event, step.user, step.device, step.ms, step.receipt_id)
        await self._client.run(self._receipt, [], args)

    async def pending(self, user: str) -> list[Event]:
        return pending_events(await self._client.run(self._pending, [], [self._prefix, user]))

    async def receipts(self, event_id: str) -> Receipts | None:
        raw = await self._client.execute(b"HGETALL", f"{self._prefix}:crit:{event_id}")
        fields = dict(zip(raw[::2], raw[1::2], strict=True))
        if b"k" not in fields:
            return None
        users = sorted(name[2:].decode() for name in fields if name.startswith(b"r:"))
        deadline = int(fields[b"dl"])
        return Receipts(
            id=event_id,
            kind=fields[b"k"].decode(),
            published_at=int(fields[b"t"]),
            deadline_at=deadline or None,
            recipients=[
                _receipt(u, fields.get(f"d:{u}".encode()), fields.get(f"a:{u}".encode()))
                for u in users
            ],
        )

    async def claim_due(self, lease_ms: int, limit: int) -> list[Due]:
        reply = await self._client.run(self._claim, [], [self._prefix, lease_ms, limit])
        return [
            Due(event.decode(), kind.decode(), sorted(u.decode() for u in users))
            for event, kind, *users in reply
        ]

    async def settle(self, event_id: str) -> None:
        await self._client.execute(b"ZREM", f"{self._prefix}:deadlines", event_id)


class RedisPresence:
    """:class:`~fieldpush.backend.base.Presence` on Redis; see the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        #: The control channel of this node and its kick handler, once registered.
        self.kicks: tuple[bytes, Callable[[str], None]] | None = None

    def on_kick(self, node: str, handler: Callable[[str], None]) -> None:
        """See :meth:`~fieldpush.backend.base.Presence.on_kick`; the backend
        subscribes to the node's control channel at start."""
        self.kicks = (self.control_channel(node), handler)

    def _user_key(self, user: str) -> str:
        return f"{self._prefix}:pres:u:{user}"

    def _channel_key(self, channel: str) -> str:
        return f"{self._prefix}:pres:c:{channel}"

    def control_channel(self, node: str) -> bytes:
        """The pub/sub channel on which ``node`` receives kick requests."""
        return f"{self._prefix}:ctl:{node}".encode()

    def _channel_entry(self, entry: PresenceEntry, channel: str) -> tuple[Any, ...]:
        return (b"HSET", self._channel_key(channel), entry.session, presence_values(entry)[1])

    async def join(self, entry: PresenceEntry, channels: list[str]) -> None:
        value, in_channel = presence_values(entry)
        session = entry.session
        await self._client.pipeline(
            [
                (b"HSET", self._user_key(entry.user), session, value),
                *((b"HSET", self._channel_key(ch), session, in_channel) for ch in channels),
            ],
        )

    async def leave(self, entry: PresenceEntry, channels: list[str]) -> None:
        seen = f"{self._prefix}:pres:seen:{entry.user}"
        await self._client.pipeline(
            [
                (b"HDEL", self._user_key(entry.user), entry.session),
                *((b"HDEL", self._channel_key(channel), entry.session) for channel in channels),
                (b"SET", seen, entry.last_seen, b"PX", LAST_SEEN_TTL_MS),
            ],
        )

    async def subscribe(self, entry: PresenceEntry, channel: str) -> None:
        await self._client.execute(*self._channel_entry(entry, channel))

    async def unsubscribe(self, entry: PresenceEntry, channel: str) -> None:
        await self._client.execute(b"HDEL", self._channel_key(channel), entry.session)

    async def beat(self, node: str, ttl_ms: int) -> None:
        now = await self._client.execute(b"TIME")
        ms = int(now[0]) * 1000 + int(now[1]) // 1000
        await self._client.execute(b"SET", f"{self._prefix}:pres:n:{node}", ms, b"PX", ttl_ms)

    async def gone(self, node: str) -> None:
        await self._client.execute(b"DEL", f"{self._prefix}:pres:n:{node}")

    async def _live(self, key: str, raw: list[bytes], has_user: bool) -> list[PresenceEntry]:
        """Parse a presence hash, keep the entries of live nodes, drop the others."""
        parsed = []
        for session, value in zip(raw[::2], raw[1::2], strict=True):
            fields = json.loads(value)
            user = fields.pop(0) if has_user else ""
            parsed.append((session.decode(), user, *fields))
        nodes = sorted({node for _, _, node, _, _ in parsed})
        beats = dict(
            zip(
                nodes,
                await self._client.execute(b"MGET", *[f"{self._prefix}:pres:n:{n}" for n in nodes])
                if nodes
                else [],
                strict=True,
            )
        )
        live, dead = [], []
        for session, user, node, device, since in parsed:
            beat = beats.get(node)
            if beat is None:
                dead.append(session)
            else:
                live.append(
                    PresenceEntry(user, session, device, node, since, max(since, int(beat)))
                )
        if dead:
            await self._client.execute(b"HDEL", key, *dead)
        live.sort(key=lambda e: (e.since, e.session))
        return live

    async def sessions_of(self, user: str) -> list[PresenceEntry]:
        key = self._user_key(user)
        raw = await self._client.execute(b"HGETALL", key)
        return [
            PresenceEntry(user, e.session, e.device, e.node, e.since, e.last_seen)
            for e in await self._live(key, raw, has_user=False)
        ]

    async def of_user(self, user: str) -> tuple[list[PresenceEntry], int | None]:
        entries = await self.sessions_of(user)
        if entries:
            return entries, max(e.last_seen for e in entries)
        seen = await self._client.execute(b"GET", f"{self._prefix}:pres:seen:{user}")
        return [], int(seen) if seen is not None else None

    async def of_channel(self, channel: str) -> list[PresenceEntry]:
        key = self._channel_key(channel)
        return await self._live(key, await self._client.execute(b"HGETALL", key), has_user=True)

    async def kick(self, node: str, session: str) -> None:
        await self._client.execute(b"PUBLISH", self.control_channel(node), session)
