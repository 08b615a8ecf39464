"""One phone's session: hello, subscriptions, resume, and the delivery path.

A :class:`Session` speaks the protocol of PROTOCOL.md section 1 over one
WebSocket (:class:`server.gateway.Connection` does the framing). Inbound
messages are handled strictly in order: quick ones (``ping``, ``ack``) inline,
the others (``hello``, ``subscribe``, ``unsubscribe``) by a worker task that
exists only while there is such work, so an idle phone costs no task.

Delivery guarantees (per connection)
    Events of a channel are written in offset order, each at most once. A
    subscription with an offset first writes every retained event after it
    (``recovered: true``) and only then the live events that arrived
    meanwhile; nothing is lost between the two because the live feed is
    attached before history is read and both are de-duplicated by ``seq``.

The hot path is :meth:`Subscription.deliver` (a list append) ->
:meth:`Session.flush`, called once per event-loop iteration for
every session with pending events: one event is written as its shared,
pre-encoded ``event`` frame; several are coalesced into one ``events`` frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from client_sdk.protocol import (
    Ack,
    ClientMessage,
    CloseCode,
    ErrorCode,
    Hello,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)
from server.auth import Identity
from server.errors import AuthError, BackendUnavailable
from server.events import Event, events_frame
from server.offsets import Offset
from server.policy import may_subscribe

if TYPE_CHECKING:
    from server.gateway import Connection
    from server.node import Node

__all__ = ["Session", "Subscription"]

log = logging.getLogger("fieldpush.session")

#: Most messages a client may have waiting for the worker before it is closed (4029).
MAX_INBOX = 256
#: Most events in one replay frame.
REPLAY_FRAME_EVENTS = 100


class Subscription:
    """A session's subscription to one channel: a :class:`~server.hub.Subscriber`."""

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
            session = self.session
            session.outbox.append(event)
            if not session.dirty:
                session.dirty = True
                session.node.flusher.add(session)

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
        "device",
        "dirty",
        "id",
        "identity",
        "inbox",
        "node",
        "opened_at",
        "outbox",
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
        self.subs: dict[str, Subscription] = {}
        self.outbox: list[Event] = []
        self.dirty = False
        self.inbox: deque[dict[str, Any]] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.opened_at = time.monotonic()
        #: Token bucket of inbound messages, and refusals in a row.
        self.tokens = float(node.settings.rate_limit_burst)
        self.tokens_at = self.opened_at
        self.strikes = 0

    # ------------------------------------------------------------ delivery path

    def flush(self) -> int:
        """Write the pending events; return how many. Called by the node's flusher.

        The outbox list is reused (cleared, not replaced): one allocation less
        per delivery. Nothing can append to it while the frame is written."""
        events = self.outbox
        self.dirty = False
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
        elif isinstance(message, Subscribe):
            return self._subscribe(message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(message)
        elif isinstance(message, Hello):
            self.error(ErrorCode.BAD_REQUEST, "hello was already received")
        return None

    def _refuse_before_hello(self, raw: dict[str, Any]) -> None:
        kind = raw.get("type")
        if kind == "hello":
            reason = "invalid hello"
        else:
            reason = f"expected hello, got {kind!r}" if isinstance(kind, str) else "expected hello"
        log.info("connection %s refused: %s", self.conn.peer, reason)
        self.close(CloseCode.UNAUTHORIZED, reason)

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
        self.conn.hello_received()
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
                "poll": dict(node.settings.poll_intervals_s),
                "subs": {ch: states[ch] for ch in wanted},
            }
        )
        node.sessions_opened(self)
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
        for channel, (top, _, first_page) in zip(allowed, opened, strict=True):
            await self._replay(self.subs[channel], first_page, top)

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

    async def _replay(self, subscription: Subscription, page: list[Event], top: Offset) -> None:
        """Write ``page`` and the rest of the history up to ``top``, then go live."""
        settings = self.node.settings
        try:
            while page and not self.conn.closing:
                for start in range(0, len(page), REPLAY_FRAME_EVENTS):
                    chunk = page[start : start + REPLAY_FRAME_EVENTS]
                    frame = (
                        chunk[0].frame(self.binary)
                        if len(chunk) == 1
                        else events_frame(chunk, self.binary)
                    )
                    self.conn.write(frame)
                self.node.metrics.replayed_events += len(page)
                last = page[-1]
                subscription.last_seq = last.seq
                if last.seq >= top.seq:
                    break
                history = await self.node.backend.read(
                    subscription.channel, last.position, settings.replay_page_events
                )
                page = history.events
        finally:
            subscription.go_live()

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
        await self._replay(self.subs[channel], page, top)

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
        self.send({"type": "unsubscribed", "id": message.id, "channel": channel})

    # ----------------------------------------------------------------- teardown

    def teardown(self, code: int | None) -> None:
        """The connection is gone: leave every feed, stop the worker, log once."""
        if self.worker is not None:
            self.worker.cancel()
        for channel, subscription in self.subs.items():
            self.node.hub.detach(channel, subscription)
        self.subs.clear()
        self.outbox.clear()
        if self.identity is not None:
            self.node.sessions_closed(self)
            log.info(
                "session %s closed: user %s device %s, code %s, after %.1f s",
                self.id,
                self.identity.user,
                self.device,
                code,
                time.monotonic() - self.opened_at,
            )
