"""One phone's session: hello, subscriptions, resume, and the delivery path.

A :class:`Session` speaks the protocol of PROTOCOL.md section 1 over one
WebSocket (:class:`fieldpush.transport.gateway.Connection` does the framing). Inbound
messages are handled strictly in order: quick ones (``ping``, ``ack``) inline,
the others (``hello``, ``subscribe``, ``unsubscribe``) by a worker task that
exists only while there is such work, so an idle phone costs no task.

Delivery guarantees (per connection)
    Events of a channel are written in offset order, each at most once. A
    subscription with an offset first writes every retained event after it
    (``recovered: true``) and only then the live events that arrived
    meanwhile; nothing is lost between the two because the live feed is
    attached before history is read and both are de-duplicated by ``seq``.

Priorities (PROTOCOL.md "Priorities")
    ``critical`` and ``high`` events are written at the end of the current
    event-loop iteration; ``normal`` ones too, unless this phone got a write
    less than ``coalesce_ms`` ago: then at the end of the node's coalescing
    window (or earlier, with an urgent one), so that a burst to one phone
    shares frames while a lone event is not delayed; ``low`` ones are
    held until the next non-low event (and go just ahead of it) or until the
    ``low`` poll interval passed. ``critical`` events are written at most once
    per connection, whether they come from a replay, the pending list or the
    live feed, and each write is recorded for the receipts.

The hot path is :meth:`Subscription.deliver` -> :meth:`Session.push` (a list
append) -> :meth:`Session.flush`, called by the node's flusher: one event is
written as its shared, pre-encoded ``event`` frame; several are coalesced into
one ``events`` frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from fieldpush.errors import AuthError, BackendUnavailable
from fieldpush.events.event import Event, events_frame
from fieldpush.events.offsets import Offset
from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import may_subscribe
from fieldpush.sync.engine import SyncError, actor_of
from fieldpush_client.protocol import (
    Ack,
    ClientMessage,
    CloseCode,
    ErrorCode,
    Hello,
    Mutate,
    Ping,
    ProtocolError,
    Pull,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)

if TYPE_CHECKING:
    from fieldpush.node import Node
    from fieldpush.transport.gateway import Connection

__all__ = ["Session", "Subscription"]

log = logging.getLogger("fieldpush.session")

#: Most messages a client may have waiting for the worker before it is closed (4029).
MAX_INBOX = 256
#: Most events, and about the most bytes, in one replay frame.
REPLAY_FRAME_EVENTS = 100
REPLAY_FRAME_BYTES = 64 * 1024


class Subscription:
    """A session's subscription to one channel: a :class:`~fieldpush.delivery.hub.Subscriber`."""

    __slots__ = ("channel", "last_seq", "replaying", "session")

    def __init__(self, session: Session, channel: str) -> None:
        self.session = session
        self.channel = channel
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
            if event.origin is None or event.origin != self.session.origin:
                self.session.push(event)

    def feed_lost(self, channel: str) -> None:
        self.session.close(CloseCode.SERVICE_RESTART, f"events of {channel} were lost; resume")

    def go_live(self) -> None:
        """End the replay: pass on the live events held back, skipping known ones."""
        held, self.replaying = self.replaying or [], None
        for event in held:
            self.deliver(event)


class Session:
    """The protocol state of one connection. Created by the gateway at upgrade."""

    __slots__ = (
        "binary",
        "conn",
        "critical_sent",
        "device",
        "dirty",
        "flushed_at",
        "held",
        "held_timer",
        "id",
        "identity",
        "inbox",
        "node",
        "opened_at",
        "origin",
        "outbox",
        "since_ms",
        "strikes",
        "subs",
        "tokens",
        "tokens_at",
        "worker",
    )

    def __init__(self, node: Node, conn: Connection) -> None:
        self.node = node
        self.conn = conn
        self.binary = conn.binary
        self.id = node.new_session_id()
        self.identity: Identity | None = None
        self.device = ""
        #: ``(user, device)`` once past hello: record changes it made are not echoed.
        self.origin: tuple[str, str] | None = None
        self.subs: dict[str, Subscription] = {}
        self.outbox: list[Event] = []
        #: 0: nothing to write; 1: waits for the coalescing window; 2: urgent.
        self.dirty = 0
        #: The flusher's clock when this session's events were last written; never
        #: yet: minus infinity (``time.monotonic()`` has no fixed origin, and is
        #: small on a freshly booted machine).
        self.flushed_at = float("-inf")
        #: ``low`` events held back, and the timer that releases them.
        self.held: list[Event] | None = None
        self.held_timer: asyncio.TimerHandle | None = None
        #: Ids of the critical events written on this connection.
        self.critical_sent: set[str] = set()
        self.inbox: deque[dict[str, Any]] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.opened_at = time.monotonic()
        self.since_ms = time.time_ns() // 1_000_000
        #: Token bucket of inbound messages, and refusals in a row.
        self.tokens = float(node.settings.rate_limit_burst)
        self.tokens_at = self.opened_at
        self.strikes = 0

    # ------------------------------------------------------------ delivery path

    def push(self, event: Event) -> None:
        """Queue a live event for writing, by its priority (module docstring)."""
        priority = event.priority
        if priority == "normal" and self.held is None:  # the common case, first
            self.outbox.append(event)
            if not self.dirty:
                self._schedule(self.node.flusher.coalesces(self.flushed_at))
            return
        if priority == "low":
            self._hold(event)
            return
        if priority == "critical" and not self.first_critical(event):
            return
        if self.held is not None:
            self._release_held()
        self.outbox.append(event)
        if priority != "normal":
            if self.dirty != 2:
                self._schedule(coalesce=False)
        elif not self.dirty:
            self._schedule(self.node.flusher.coalesces(self.flushed_at))

    def _schedule(self, coalesce: bool) -> None:
        """Have the flusher write the outbox: at the end of the coalescing window,
        or (not ``coalesce``) at the end of this event-loop iteration."""
        if coalesce:
            self.dirty = 1
            self.node.flusher.add_later(self)
        else:
            self.dirty = 2
            self.node.flusher.add(self)

    def first_critical(self, event: Event) -> bool:
        """Whether a critical event is new on this connection; records its delivery."""
        event_id = event.id
        if event_id in self.critical_sent:
            return False
        self.critical_sent.add(event_id)
        assert self.identity is not None
        self.node.dispatch.delivered(event_id, self.identity.user, self.device)
        return True

    def _hold(self, event: Event) -> None:
        if self.held is None:
            self.held = [event]
            delay = self.node.settings.poll_intervals_s["low"]
            self.held_timer = asyncio.get_running_loop().call_later(delay, self._flush_held)
        else:
            self.held.append(event)
            if len(self.held) > self.node.settings.max_held_events:
                self._flush_held()

    def _release_held(self) -> None:
        """Move the held ``low`` events into the outbox (ahead of what follows)."""
        held, self.held = self.held or [], None
        if self.held_timer is not None:
            self.held_timer.cancel()
            self.held_timer = None
        self.outbox.extend(held)

    def _flush_held(self) -> None:
        """The ``low`` interval passed (or too many are held): write them now."""
        self.held_timer = None
        self._release_held()
        if self.dirty != 2:
            self._schedule(coalesce=False)

    def flush(self) -> int:
        """Write the pending events; return how many. Called by the node's flusher.

        The outbox list is reused (cleared, not replaced): one allocation less
        per delivery. Nothing can append to it while the frame is written."""
        events = self.outbox
        self.dirty = 0
        count = len(events)
        if count == 1:
            event = events[0]
            data = event.frames[self.binary] or event.frame(self.binary)
        elif count:
            data = events_frame(events, self.binary)
        events.clear()
        if not count or self.conn.closing:
            return 0
        self.conn.write(data)
        return count

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send_message(message)

    def error(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        reply: dict[str, Any] = {"type": "error", "code": code.value, "message": message}
        if request_id is not None:
            reply["id"] = request_id
        self.send(reply)

    def close(self, code: CloseCode, reason: str) -> None:
        self.conn.close(code, reason)

    # ----------------------------------------------------------------- inbound

    def on_message(self, message: dict[str, Any]) -> None:
        """A decoded message from the client, in order of arrival."""
        if not self._take_token():
            self._rate_limited(message)
            return
        if len(self.inbox) >= MAX_INBOX:
            self.close(CloseCode.RATE_LIMITED, "too many requests in flight")
            return
        self.inbox.append(message)
        if self.worker is None:
            self._drain()

    def _take_token(self) -> bool:
        """Token bucket: ``rate_limit_per_s`` refill, ``rate_limit_burst`` capacity."""
        settings = self.node.settings
        now = time.monotonic()
        self.tokens = min(
            float(settings.rate_limit_burst),
            self.tokens + (now - self.tokens_at) * settings.rate_limit_per_s,
        )
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        self.strikes = 0
        return True

    def _rate_limited(self, message: dict[str, Any]) -> None:
        self.strikes += 1
        if self.strikes > self.node.settings.rate_limit_burst:
            log.info("session %s: closed for sending too fast", self.id)
            self.close(CloseCode.RATE_LIMITED, "too many messages")
            return
        request_id = message.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, int):
            request_id = None
        if self.strikes == 1:
            log.info("session %s: rate limited", self.id)
        self.error(ErrorCode.RATE_LIMITED, "too many messages; slow down", request_id)

    def _drain(self) -> None:
        """Handle queued messages inline until one needs the worker."""
        while self.inbox and not self.conn.closing:
            work = self._handle(self.inbox.popleft())
            if work is not None:
                self.worker = asyncio.get_running_loop().create_task(self._work(work))
                return

    async def _work(self, first: Any) -> None:
        try:
            await first
            while self.inbox and not self.conn.closing:
                work = self._handle(self.inbox.popleft())
                if work is not None:
                    await work
        finally:
            self.worker = None

    def _handle(self, raw: dict[str, Any]) -> Any:
        """Handle one message; return a coroutine when it needs to wait."""
        try:
            message: ClientMessage = parse_client_message(raw)
        except ProtocolError as exc:
            if self.identity is None:
                self._refuse_before_hello(raw)
                return None
            self.node.metrics.bad_requests += 1
            log.info("session %s: bad request: %s", self.id, exc)
            self.error(ErrorCode.BAD_REQUEST, str(exc), exc.request_id)
            return None
        if self.identity is None:
            if isinstance(message, Hello):
                return self._hello(message)
            self._refuse_before_hello(raw)
            return None
        if isinstance(message, Ping):
            self.send({"type": "pong", "id": message.id, "ts": time.time_ns() // 1_000_000})
        elif isinstance(message, Ack):
            self.node.metrics.acks += len(message.ids)
            self._ack(message)
        elif isinstance(message, Subscribe):
            return self._subscribe(message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(message)
        elif isinstance(message, Mutate):
            return self._mutate(message)
        elif isinstance(message, Pull):
            return self._pull(message)
        elif isinstance(message, Hello):
            self.error(ErrorCode.BAD_REQUEST, "hello was already received")
        return None

    # ------------------------------------------------------------ delta sync

    async def _mutate(self, message: Mutate) -> None:
        assert self.identity is not None
        limit = self.node.settings.sync_max_mutations
        if len(message.mutations) > limit:
            self.error(
                ErrorCode.TOO_LARGE,
                f"at most {limit} mutations per mutate; send the rest in another",
                message.id,
            )
            return
        try:
            results = await self.node.sync.mutate(
                actor_of(self.identity, self.device), message.mutations
            )
        except BackendUnavailable:
            self.error(
                ErrorCode.UNAVAILABLE,
                "backend unavailable; send the mutations again (same mids)",
                message.id,
            )
            return
        self.send({"type": "mutated", "id": message.id, "results": results})

    async def _pull(self, message: Pull) -> None:
        assert self.identity is not None
        try:
            reply = await self.node.sync.pull(
                actor_of(self.identity, self.device), message.cursor, message.types, message.limit
            )
        except SyncError as exc:
            self.error(exc.code, exc.message, message.id)
            return
        except BackendUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "backend unavailable; pull again", message.id)
            return
        self.send({"type": "changes", "id": message.id, **reply})

    def _refuse_before_hello(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        if kind == "hello":
            reason = "invalid hello"
        else:
            reason = f"expected hello, got {kind!r}" if isinstance(kind, str) else "expected hello"
        log.info("connection %s refused: %s", self.conn.peer, reason)
        self.close(CloseCode.UNAUTHORIZED, reason)

    def _ack(self, message: Ack) -> None:
        """Record the acks in the background (they are batched with the node's
        other receipt steps); a failure is reported to the phone."""
        assert self.identity is not None
        count = len(message.ids)
        recorded = self.node.dispatch.acked(self.identity.user, self.device, list(message.ids))

        def reported(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("session %s: ack of %d event(s) not recorded", self.id, count)
                self.error(
                    ErrorCode.UNAVAILABLE, "ack not recorded: backend unavailable; ack again"
                )

        recorded.add_done_callback(reported)

    # ------------------------------------------------------------------- hello

    async def _hello(self, hello: Hello) -> None:
        node = self.node
        try:
            identity = node.verifier.verify(hello.token or self.conn.header_token)
        except AuthError as exc:
            log.info("connection %s refused: %s (device %s)", self.conn.peer, exc, hello.device)
            self.close(CloseCode.UNAUTHORIZED, str(exc))
            return
        self.identity = identity
        self.device = hello.device
        self.origin = (identity.user, hello.device)
        self.conn.hello_received()
        try:
            admitted = await node.presence.admit(self)
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during hello", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; retry")
            return
        if not admitted:
            limit = node.settings.max_connections_per_user
            log.info(
                "session %s refused: user %s has %d connections", self.id, identity.user, limit
            )
            self.close(CloseCode.RATE_LIMITED, f"at most {limit} connections per user")
            return
        wanted: dict[str, str | None] = {f"user:{identity.user}": None, **hello.subs}
        states: dict[str, dict[str, Any]] = {}
        allowed: list[str] = []
        limit = node.settings.max_subscriptions
        for channel in wanted:  # the own user channel first: it always fits
            if may_subscribe(identity, channel) and len(allowed) < limit:
                allowed.append(channel)
            else:
                states[channel] = {"error": ErrorCode.FORBIDDEN.value}
        opened = []
        try:
            # One after the other: most channels open without a round trip (their
            # feed is live), and a task per channel would cost more than it saves.
            for channel in allowed:
                opened.append(await self._open(channel, wanted[channel]))
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during hello", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; retry")
            return
        for channel, (top, recovered, _) in zip(allowed, opened, strict=True):
            states[channel] = {"offset": str(top), "recovered": recovered}
        self.send(
            {
                "type": "welcome",
                "session": self.id,
                "user": identity.user,
                "role": identity.role,
                "node": node.settings.node_id,
                "heartbeat_s": node.settings.heartbeat_s,
                "poll": node.poll_intervals,
                "subs": {ch: states[ch] for ch in wanted},
            }
        )
        node.sessions_opened(self)
        node.presence.opened(self)
        log.info(
            "session %s open: user %s role %s device %s from %s, %s, %d channel(s)",
            self.id,
            identity.user,
            identity.role,
            self.device,
            self.conn.peer,
            self.conn.subprotocol,
            len(allowed),
        )
        subscriptions = [self.subs[channel] for channel in allowed]
        try:
            for subscription, (top, _, first_page) in zip(subscriptions, opened, strict=True):
                await self._replay(subscription, first_page, top)
            await self._send_pending()
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            for subscription in subscriptions:
                subscription.go_live()

    async def _send_pending(self) -> None:
        """Write the user's pending critical events not written yet (after the
        replays, before any live event)."""
        assert self.identity is not None
        pending = await self.node.backend.ledger.pending(self.identity.user)
        await self._write_paced([e for e in pending if self.first_critical(e)])

    # ----------------------------------------------------------- subscriptions

    async def _open(self, channel: str, since_text: str | None) -> tuple[Offset, bool, list[Event]]:
        """Attach a replaying subscription and read what it must replay.

        Returns the channel position to report, whether the client's offset was
        recovered, and the first page of events to replay.
        """
        subscription = self.subs[channel] = Subscription(self, channel)
        try:
            feed = await self.node.hub.attach(channel, subscription)
            assert feed.position is not None
            if since_text is None:
                subscription.last_seq = feed.position.seq
                return feed.position, True, []
            since = Offset.parse(since_text)
            history = await self.node.backend.read(
                channel, since, self.node.settings.replay_page_events
            )
        except BaseException:
            del self.subs[channel]
            self.node.hub.detach(channel, subscription)
            raise
        if not history.recovered or since is None:
            subscription.last_seq = history.top.seq
            return history.top, False, []
        subscription.last_seq = since.seq
        return history.top, True, history.events

    async def _write_paced(self, events: list[Event]) -> None:
        """Write events in frames of at most ``REPLAY_FRAME_EVENTS`` events and
        about ``REPLAY_FRAME_BYTES``, each once the phone has read enough of the
        previous ones (:meth:`Connection.drained`): a long replay never trips
        the outbox bound of a phone that reads."""
        start, count = 0, len(events)
        while start < count and not self.conn.closing:
            end, size = start, 0
            while end < count and end - start < REPLAY_FRAME_EVENTS and size < REPLAY_FRAME_BYTES:
                size += len(events[end].body)
                end += 1
            await self.conn.drained()
            chunk = events[start:end]
            single = len(chunk) == 1
            self.conn.write(
                chunk[0].frame(self.binary) if single else events_frame(chunk, self.binary)
            )
            start = end

    async def _replay(self, subscription: Subscription, page: list[Event], top: Offset) -> None:
        """Write ``page`` and the rest of the history up to ``top``. The caller
        then makes the subscription go live. Raises ``BackendUnavailable``."""
        settings = self.node.settings
        while page and not self.conn.closing:
            last = page[-1]
            if any(event.priority == "critical" for event in page):
                page = [e for e in page if e.priority != "critical" or self.first_critical(e)]
            if any(event.origin is not None for event in page):
                page = [e for e in page if e.origin is None or e.origin != self.origin]
            await self._write_paced(page)
            self.node.metrics.replayed_events += len(page)
            subscription.last_seq = last.seq
            if last.seq >= top.seq:
                break
            history = await self.node.backend.read(
                subscription.channel, last.position, settings.replay_page_events
            )
            if not history.recovered:
                # Trimmed while we read: the client must learn of the gap.
                self.close(
                    CloseCode.SERVICE_RESTART, f"history of {subscription.channel} moved; resume"
                )
                break
            page = history.events

    async def _subscribe(self, message: Subscribe) -> None:
        assert self.identity is not None
        channel = message.channel
        if channel in self.subs:
            self.error(ErrorCode.BAD_REQUEST, f"already subscribed to {channel}", message.id)
            return
        limit = self.node.settings.max_subscriptions
        if len(self.subs) >= limit:
            self.error(
                ErrorCode.FORBIDDEN, f"at most {limit} subscriptions per connection", message.id
            )
            return
        if not may_subscribe(self.identity, channel):
            log.info("session %s: subscribe to %s forbidden", self.id, channel)
            self.error(ErrorCode.FORBIDDEN, f"not allowed to subscribe to {channel}", message.id)
            return
        try:
            top, recovered, page = await self._open(channel, message.since)
        except BackendUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "backend unavailable; retry", message.id)
            return
        self.send(
            {
                "type": "subscribed",
                "id": message.id,
                "channel": channel,
                "offset": str(top),
                "recovered": recovered,
            }
        )
        self.node.presence.subscribed(self, channel)
        subscription = self.subs[channel]
        try:
            await self._replay(subscription, page, top)
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            subscription.go_live()

    def _unsubscribe(self, message: Unsubscribe) -> None:
        assert self.identity is not None
        channel = message.channel
        if channel == f"user:{self.identity.user}":
            self.error(
                ErrorCode.BAD_REQUEST, "the own user channel cannot be unsubscribed", message.id
            )
            return
        subscription = self.subs.pop(channel, None)
        if subscription is None:
            self.error(ErrorCode.BAD_REQUEST, f"not subscribed to {channel}", message.id)
            return
        self.node.hub.detach(channel, subscription)
        self.node.presence.unsubscribed(self, channel)
        self.send({"type": "unsubscribed", "id": message.id, "channel": channel})

    # ----------------------------------------------------------------- teardown

    def teardown(self, code: int | None) -> None:
        """The connection is gone: leave every feed, stop the worker, log once."""
        if self.worker is not None:
            self.worker.cancel()
        if self.held_timer is not None:
            self.held_timer.cancel()
        channels = list(self.subs)
        for channel, subscription in self.subs.items():
            self.node.hub.detach(channel, subscription)
        self.subs.clear()
        self.outbox.clear()
        if self.identity is not None:
            self.node.sessions_closed(self)
            self.node.presence.closed(self, channels)
            self.node.dispatch.forget(self.identity.user, list(self.critical_sent))
            log.info(
                "session %s closed: user %s device %s, code %s, after %.1f s",
                self.id,
                self.identity.user,
                self.device,
                code,
                time.monotonic() - self.opened_at,
            )
