"""The Redis backend: history in Streams, live fan-out through pub/sub.

Data model, per channel ``<ch>`` (keys carry the hash tag ``{<ch>}``):

- ``<prefix>:{<ch>}:m``  hash ``e`` (epoch), ``s`` (last seq), ``t`` (last ms);
- ``<prefix>:{<ch>}:s``  stream; entry id ``<ms>-<seq>``, fields ``p`` (priority),
  ``b`` (event body) and, for an event with an origin, ``o`` (the origin token
  of :func:`~fieldpush.events.event.encode_origin`; entries without it have no
  origin), trimmed to ``history_max_events`` and ``history_max_age_s``;
- ``<prefix>:<ch>``       pub/sub channel; message ``<seq> <ms> <epoch> <priority> <body>``,
  or ``<seq> <ms> <epoch> <priority> <origin> <body>`` (a body starts with ``{``);
- ``<prefix>:idem:<len(publisher)>:<publisher>:<key>``  idempotency record
  (fingerprint + result); the length keeps publishers ``a:b`` + key ``c`` and
  ``a`` + key ``b:c`` apart.

A publish is one Lua script (``publish.lua``): it checks the idempotency key,
appends to every channel's stream and PUBLISHes the doorbell, atomically, so
an event is announced only once stored and a 201 is never given for an event
that is not. Reads use ``read.lua``: the channel's position and the entries
after an offset in one round trip. A channel that is read before its first
publish gets its epoch then, so ``<epoch>:0-0`` stays a valid position.

Commands go through :class:`~fieldpush.backend.redis.client.RedisClient` (one
pipelined connection, reconnected on demand); the live feed through
:class:`~fieldpush.backend.redis.pubsub.PubSub` (its own connection, re-subscribed
after every reconnect, which then calls ``EventSink.on_reconnected``).

User channels (``user:<id>``) are not subscribed one by one: each node holds
one pattern subscription, ``<prefix>:user:*``, from its start, and drops the
doorbells of users it has no session of. A ``hello`` then needs no SUBSCRIBE
for its user's channel (the channel every session has, and the one a node
rarely has open already), at the cost of every node receiving every user
channel's doorbells (one dictionary lookup each for users it does not serve).
Connection failures and timeouts surface as ``BackendUnavailable``.

A multi-channel publish touches several hash slots, so on Redis Cluster it
would need one script per slot; this backend targets a single Redis (with
replicas) for now.
"""

from __future__ import annotations

import logging
from typing import Any

from fieldpush.backend.base import (
    BackendHealth,
    EventSink,
    History,
    PublishRequest,
    PublishResult,
    SessionOpened,
    SessionOpening,
)
from fieldpush.backend.redis.accounts import RedisAccounts
from fieldpush.backend.redis.audit import RedisAudit
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.devices import RedisDevices, device_of
from fieldpush.backend.redis.directory import RedisDirectory
from fieldpush.backend.redis.ledger import (
    RedisLedger,
    RedisPresence,
    live_entries,
    pending_events,
    presence_values,
    script,
)
from fieldpush.backend.redis.pubsub import PubSub, RedisAddress
from fieldpush.backend.redis.records import RedisRecords
from fieldpush.backend.redis.webhook import RedisWebhook
from fieldpush.errors import BackendUnavailable, IdempotencyConflict
from fieldpush.events.event import Event, decode_origin, encode_origin
from fieldpush.events.offsets import Offset, can_recover, new_epoch

__all__ = ["RedisBackend"]

log = logging.getLogger("fieldpush.backend")


class RedisBackend:
    """Backend on one Redis server shared by every node. See the module docstring."""

    name = "redis"

    def __init__(
        self,
        *,
        url: str,
        prefix: str = "fp",
        timeout_s: float = 2.0,
        history_max_events: int,
        history_max_age_s: float,
        history_meta_ttl_s: float,
        idempotency_ttl_s: float,
        receipts_ttl_s: float = 7 * 86400,
        sync_results_ttl_s: float = 7 * 86400,
        sync_log_max_entries: int = 1_000_000,
        sync_log_max_age_s: float = 30 * 86400,
    ) -> None:
        self._address = RedisAddress.from_url(url)
        self._pubsub_reconnects = 0
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._max_events = history_max_events
        self._max_age_ms = int(history_max_age_s * 1000)
        self._meta_ttl_ms = int(history_meta_ttl_s * 1000)
        self._idempotency_ttl_ms = int(idempotency_ttl_s * 1000)
        self._sink: EventSink | None = None
        self._pubsub_prefix = f"{prefix}:".encode()
        #: Every user channel, subscribed once per node (module docstring).
        self._user_channels = self._pubsub_prefix + b"user:*"
        #: Pub/sub name -> channel, for the channels this node subscribed to.
        self._subscribed: dict[bytes, str] = {}
        self._client = RedisClient(self._address, timeout_s=timeout_s)
        self._pubsub: PubSub | None = None
        self._receipts_ttl_ms = int(receipts_ttl_s * 1000)
        self._publish = script("publish.lua", "append.lua")
        self._read = script("read.lua", "history.lua")
        self._open = script("open.lua", "history.lua", "pending_events.lua")
        self.ledger = RedisLedger(
            self._client,
            prefix,
            dispatch=(*self._keys("dispatch"), self._pubsub_name("dispatch")),
            history=(self._max_events, self._max_age_ms, self._meta_ttl_ms),
        )
        self.presence = RedisPresence(self._client, prefix)
        self.accounts = RedisAccounts(self._client, prefix)
        self.devices = RedisDevices(self._client, prefix, self.accounts.channel)
        self.records = RedisRecords(
            self._client,
            prefix,
            results_ttl_s=sync_results_ttl_s,
            log_max_entries=sync_log_max_entries,
            log_max_age_s=sync_log_max_age_s,
        )
        self.directory = RedisDirectory(self._client, prefix)
        self.audit = RedisAudit(self._client, prefix)
        self.webhook = RedisWebhook(self._client, prefix)

    # ------------------------------------------------------------- lifecycle

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._pubsub = PubSub(
            self._address,
            on_message=self._on_message,
            on_reconnected=self._reconnected,
            timeout_s=self._timeout_s,
            patterns=[self._user_channels],
            # Subscribed before the link counts as up, on every (re)connect.
            channels=[
                self.accounts.channel,
                *([] if self.presence.kicks is None else [self.presence.kicks[0]]),
            ],
        )
        await self._pubsub.start()

    @property
    def health(self) -> BackendHealth:
        client, pubsub = self._client, self._pubsub
        return BackendHealth(
            up=client.linked and pubsub is not None and pubsub.connected,
            errors=client.errors,
            reconnects=client.reconnects + self._pubsub_reconnects,
        )

    def _reconnected(self) -> None:
        """The pub/sub link is back: the hub catches up from history, the
        accounts' listener re-reads what it may have missed."""
        self._pubsub_reconnects += 1
        if self._sink is not None:
            self._sink.on_reconnected()
        self.accounts.resync()

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.close()
        await self._client.close()
        self._sink = None

    # --------------------------------------------------------------- helpers

    def _keys(self, channel: str) -> tuple[str, str]:
        return f"{self._prefix}:{{{channel}}}:m", f"{self._prefix}:{{{channel}}}:s"

    def _pubsub_name(self, channel: str) -> bytes:
        return self._pubsub_prefix + channel.encode()

    def _on_message(self, pubsub_name: bytes, payload: bytes) -> None:
        """One doorbell, ``<seq> <ms> <epoch> <priority> [<origin> ]<body>``: the hot path."""
        channel = self._subscribed.get(pubsub_name)
        sink = self._sink
        if channel is None or sink is None:
            kicks = self.presence.kicks
            if kicks is not None and pubsub_name == kicks[0]:
                kicks[1](payload.decode(errors="replace"))
            elif pubsub_name == self.accounts.channel:
                self.accounts.announced(payload)
            return  # else: a user this node has no session of, or sent before our UNSUBSCRIBE
        try:
            seq, ms, epoch, priority, body = payload.split(b" ", 4)
            origin = None
            if body[:1] != b"{":
                token, body = body.split(b" ", 1)
                origin = decode_origin(token)
            event = Event(
                channel, epoch.decode(), int(ms), int(seq), priority.decode(), body, origin
            )
        except ValueError:
            log.warning("dropped a malformed pub/sub message on %s", channel)
            return
        sink.on_event(event)

    # ------------------------------------------------------------- interface

    async def publish(self, request: PublishRequest) -> PublishResult:
        idempotency, tracking = request.idempotency, request.tracking
        keys = [
            f"{self._prefix}:idem:{len(idempotency.publisher)}:{idempotency.publisher}:"
            f"{idempotency.key}"
            if idempotency is not None
            else f"{self._prefix}:idem:-"
        ]
        args: list[Any] = [
            "1" if idempotency is not None else "0",
            idempotency.fingerprint if idempotency is not None else "",
            self._idempotency_ttl_ms,
            request.event_id,
            request.priority,
            request.body,
            self._max_events,
            self._max_age_ms,
            self._meta_ttl_ms,
            tracking.kind if tracking is not None else "",
            tracking.ack_deadline_ms if tracking is not None else 0,
            self._prefix,
            self._receipts_ttl_ms,
            encode_origin(request.origin) if request.origin is not None else "",
        ]
        for channel in request.channels:
            keys.extend(self._keys(channel))
            args.extend((new_epoch(), self._pubsub_name(channel), channel))
        status, *result = await self._client.run(self._publish, keys, args)
        if status == b"conflict":
            assert idempotency is not None
            raise IdempotencyConflict(idempotency.key)
        event_id, *pairs = [item.decode() for item in result]
        offsets = dict(zip(pairs[::2], pairs[1::2], strict=True))
        return PublishResult(event_id, offsets, duplicate=status == b"dup")

    def _read_args(self, since: Offset | None, limit: int) -> list[Any]:
        """The arguments of ``read_history`` (history.lua) after its two keys."""
        return [
            new_epoch(),
            self._meta_ttl_ms,
            since.stream_id if since is not None else "",
            # At least one entry even for limit 0: the first one decides ``recovered``.
            max(limit, 1) if since is not None else 0,
            since.epoch if since is not None else "",
        ]

    @staticmethod
    def _history(channel: str, since: Offset | None, limit: int, reply: list[Any]) -> History:
        """The :class:`History` of a ``read_history`` answer."""
        epoch_raw, seq, ms, entries = reply
        epoch = epoch_raw.decode()
        top = Offset(epoch, int(ms), int(seq))
        if since is None:
            return History(top=top, recovered=True)
        events = []
        for entry_id, fields in entries:
            entry_ms, _, entry_seq = entry_id.partition(b"-")
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            origin = values.get(b"o")
            events.append(
                Event(
                    channel,
                    epoch,
                    int(entry_ms),
                    int(entry_seq),
                    values[b"p"].decode(),
                    values[b"b"],
                    decode_origin(origin) if origin is not None else None,
                )
            )
        if not can_recover(since, top, events[0].seq if events else None):
            return History(top=top, recovered=False)
        return History(top=top, recovered=True, events=events[:limit])

    async def read(self, channel: str, since: Offset | None, limit: int) -> History:
        reply = await self._client.run(
            self._read, list(self._keys(channel)), self._read_args(since, limit)
        )
        return self._history(channel, since, limit, reply)

    async def open_session(self, opening: SessionOpening) -> SessionOpened:
        """See :meth:`~fieldpush.backend.base.SessionOpener.open_session`: one
        ``open.lua``, so one round trip however many channels it reads."""
        entry = opening.entry
        user_value, channel_value = presence_values(entry)
        args: list[Any] = [
            self._prefix,
            entry.user,
            entry.session,
            user_value,
            channel_value,
            opening.cap,
            "1" if opening.refuse_over_cap else "0",
            len(opening.channels),
            *opening.channels,
            len(opening.audience),
            *opening.audience,
            len(opening.reads),
        ]
        for read in opening.reads:
            args += self._keys(read.channel)
            args += self._read_args(read.since, read.limit)
        args += [entry.device, entry.node, opening.app, opening.max_devices]
        admitted, others, reads, pending, *device = await self._client.run(self._open, [], args)
        if not admitted and device:  # a wiped device: refused before the cap
            return SessionOpened(
                admitted=False,
                others=[],
                histories=[],
                pending=[],
                device=device_of(entry.user, entry.device, device[0]),
            )
        if not admitted:
            return SessionOpened(
                admitted=False, others=live_entries(entry.user, others), histories=[], pending=[]
            )
        return SessionOpened(
            admitted=True,
            others=live_entries(entry.user, others),
            histories=[
                self._history(read.channel, read.since, read.limit, reply)
                for read, reply in zip(opening.reads, reads, strict=True)
            ],
            pending=pending_events(pending),
            device=device_of(entry.user, entry.device, device[0]),
        )

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription; raises ``BackendUnavailable``
        when it did not within ``timeout_s``. Safe to call concurrently, also for
        the same channel."""
        if self._pubsub is None:
            raise BackendUnavailable("the redis backend is not started")
        name = self._pubsub_name(channel)
        if channel.startswith("user:"):
            # Under the node's pattern subscription: nothing to ask of Redis.
            if not self._pubsub.connected:
                raise BackendUnavailable("the redis pub/sub connection is down")
            self._subscribed[name] = channel
            return
        self._subscribed[name] = channel
        await self._pubsub.subscribe(name)

    async def unsubscribe(self, channel: str) -> None:
        """Stops the live feed of ``channel`` at once (late messages are dropped)."""
        name = self._pubsub_name(channel)
        self._subscribed.pop(name, None)
        if self._pubsub is not None and not channel.startswith("user:"):
            await self._pubsub.unsubscribe(name)

    async def ready(self) -> bool:
        if self._pubsub is None or not self._pubsub.connected:
            return False
        try:
            return bool(await self._client.execute(b"PING") == b"PONG")
        except BackendUnavailable:
            return False
