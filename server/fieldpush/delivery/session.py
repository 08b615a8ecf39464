"""One phone's session: hello, subscriptions, resume, delta sync — the I/O part.

A :class:`Session` speaks the protocol of docs/protocol.md section 1 over one
connection (the gateway's :class:`~fieldpush.transport.gateway.Connection`
does the framing; the session sees it as a :class:`Link`). The decisions
that need no I/O are elsewhere and tested on their own: rate limit,
subscription limits and permissions, the ``welcome`` content
(:mod:`fieldpush.delivery.rules`), priorities and frames
(:mod:`fieldpush.delivery.outbox`), the order and de-duplication of a
channel's events (:mod:`fieldpush.delivery.subscription`). This module
awaits the backend and writes the replies.

Inbound messages are handled strictly in order: quick ones (``ping``,
``ack``) inline, the others (``hello``, ``subscribe``, ``mutate``, ``pull``)
by a worker task that exists only while there is such work, so an idle phone
costs no task. The worker is owned by the session: cancelled at teardown.

Replays are paced: written in frames of at most ``REPLAY_FRAME_EVENTS``
events and about ``REPLAY_FRAME_BYTES``, each once the phone has read enough
of the previous ones (:meth:`Link.drained`), so a long replay never trips the
outbox bound of a phone that reads. The user's pending critical events follow
the replays of ``welcome`` and come before any live event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fieldpush.backend.base import HistoryReader, Ledger
from fieldpush.delivery.flusher import Flusher
from fieldpush.delivery.hub import Hub
from fieldpush.delivery.outbox import Outbox
from fieldpush.delivery.registry import Registry
from fieldpush.delivery.rules import (
    Rate,
    RateLimit,
    Refusal,
    plan_subscriptions,
    refuse_subscribe,
    refuse_unsubscribe,
    welcome,
)
from fieldpush.delivery.subscription import Subscription
from fieldpush.errors import AuthError, BackendUnavailable
from fieldpush.events.event import Event, events_frame
from fieldpush.events.ids import Ids
from fieldpush.events.offsets import Offset
from fieldpush.identity.auth import Identity, TokenVerifier
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.engine import SyncError, actor_of
from fieldpush.sync.rules import Actor
from fieldpush.tracking.dispatch import Dispatch
from fieldpush.tracking.presence import PresenceTracker
from fieldpush_client.protocol import (
    Ack,
    Change,
    Changes,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ErrorMsg,
    Hello,
    InvalidMutation,
    Mutate,
    Mutated,
    Mutation,
    MutationResult,
    Ping,
    Pong,
    ProtocolError,
    Pull,
    ServerMessage,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    parse_client_message,
    request_id_of,
)

__all__ = ["Link", "Session", "SessionServices", "SyncService"]

log = logging.getLogger("fieldpush.session")

#: Most messages a client may have waiting for the worker before it is closed (4029).
MAX_INBOX = 256
#: Most events, and about the most bytes, in one replay frame.
REPLAY_FRAME_EVENTS = 100
REPLAY_FRAME_BYTES = 64 * 1024


class Link(Protocol):
    """The connection as its session sees it."""

    @property
    def closing(self) -> bool:
        """Once true, nothing more is written."""

    @property
    def binary(self) -> bool:
        """Whether frames are msgpack (binary) rather than JSON (text)."""

    @property
    def peer(self) -> str: ...

    @property
    def subprotocol(self) -> str: ...

    @property
    def header_token(self) -> str | None:
        """The token of the upgrade's ``Authorization`` header, if any."""

    def write(self, data: bytes) -> None:
        """Write complete frames; closes a phone that does not read (4008)."""

    def send_message(self, message: ServerMessage) -> None:
        """Encode one message with the connection's codec and write it."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Start the closing handshake; idempotent."""

    def hello_received(self) -> None:
        """Stop the hello timeout."""

    async def drained(self) -> None:
        """Return once the phone has read enough to write more."""


class SyncService(Protocol):
    """Delta sync as a session uses it (:class:`~fieldpush.sync.engine.SyncEngine`)."""

    async def mutate(
        self, actor: Actor, items: Sequence[Mutation | InvalidMutation]
    ) -> list[dict[str, Any]]:
        """One result per mutation. Raises ``BackendUnavailable``."""

    async def pull(
        self,
        actor: Actor,
        cursor: str | None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The ``changes`` reply without ``id``. Raises ``SyncError``, ``BackendUnavailable``."""

    def may_read_change(self, role: str, teams: frozenset[str], team: str, data: object) -> bool:
        """Whether ``role`` with ``teams`` may read a ``records:<team>`` event's ``data``."""


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a session needs of its node, built once by the node."""

    settings: Settings
    ids: Ids
    verifier: TokenVerifier
    hub: Hub
    history: HistoryReader
    ledger: Ledger
    presence: PresenceTracker
    dispatch: Dispatch
    sync: SyncService
    registry: Registry[Any]
    flusher: Flusher
    metrics: Metrics
    #: ``welcome.poll``.
    poll_intervals: Mapping[str, float]


class Session:
    """The protocol state of one connection. Created by the gateway at upgrade."""

    __slots__ = (
        "_services",
        "conn",
        "device",
        "id",
        "identity",
        "inbox",
        "opened_at",
        "origin",
        "outbox",
        "rate",
        "since_ms",
        "subs",
        "worker",
    )

    def __init__(self, services: SessionServices, conn: Link) -> None:
        self._services = services
        settings = services.settings
        self.conn = conn
        self.id = services.ids.new_session_id()
        self.identity: Identity | None = None
        self.device = ""
        #: ``(user, device)`` once past hello: record changes it made are not echoed.
        self.origin: tuple[str, str] | None = None
        self.subs: dict[str, Subscription] = {}
        self.outbox = Outbox(
            conn,
            conn.binary,
            services.flusher,
            on_critical=self._critical_written,
            low_interval_s=settings.poll_intervals_s["low"],
            max_held=settings.max_held_events,
            readable=self._may_read,
        )
        self.inbox: deque[dict[str, Any]] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.opened_at = time.monotonic()
        self.since_ms = time.time_ns() // 1_000_000
        self.rate = RateLimit(settings.rate_limit_per_s, settings.rate_limit_burst, time.monotonic)

    # ----------------------------------------------------------------- output

    def _critical_written(self, event_id: str) -> None:
        identity = self.identity
        if identity is not None:  # criticals are written only past hello
            self._services.dispatch.delivered(event_id, identity.user, self.device)

    def _may_read(self, event: Event) -> bool:
        """Whether this session's user may read a ``records:<team>`` event:
        the schema's read permissions of its type and every field in it."""
        identity = self.identity
        return identity is not None and self._services.sync.may_read_change(
            identity.role, identity.teams, event.channel[8:], event.fields.get("data")
        )

    def send(self, message: ServerMessage) -> None:
        self.conn.send_message(message)

    def error(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        self.send(ErrorMsg(code=code, message=message, id=request_id))

    def refuse(self, refusal: Refusal, request_id: int | None) -> None:
        self.error(refusal.code, refusal.message, request_id)

    def close(self, code: CloseCode, reason: str) -> None:
        self.conn.close(code, reason)

    # ----------------------------------------------------------------- inbound

    def on_message(self, message: dict[str, Any]) -> None:
        """A decoded message from the client, in order of arrival."""
        verdict = self.rate.take()
        if verdict is not Rate.ALLOWED:
            self._rate_limited(message, verdict)
            return
        if len(self.inbox) >= MAX_INBOX:
            self.close(CloseCode.RATE_LIMITED, "too many requests in flight")
            return
        self.inbox.append(message)
        if self.worker is None:
            self._drain()

    def _rate_limited(self, message: dict[str, Any], verdict: Rate) -> None:
        if verdict is Rate.CLOSE:
            log.info("session %s: closed for sending too fast", self.id)
            self.close(CloseCode.RATE_LIMITED, "too many messages")
            return
        request_id = request_id_of(message)
        if self.rate.strikes == 1:
            log.info("session %s: rate limited", self.id)
        self.error(ErrorCode.RATE_LIMITED, "too many messages; slow down", request_id)

    def _drain(self) -> None:
        """Handle queued messages inline until one needs the worker."""
        while self.inbox and not self.conn.closing:
            work = self._handle(self.inbox.popleft())
            if work is not None:
                self.worker = asyncio.get_running_loop().create_task(self._work(work))
                return

    async def _work(self, first: Coroutine[Any, Any, None]) -> None:
        try:
            await first
            while self.inbox and not self.conn.closing:
                work = self._handle(self.inbox.popleft())
                if work is not None:
                    await work
        except Exception:  # fail closed: a bug ends this connection, never silently
            log.exception("session %s: unexpected error", self.id)
            if self.identity is None:
                self.close(CloseCode.UNAUTHORIZED, "hello failed")
            else:
                self.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.worker = None

    def _handle(self, raw: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        """Handle one message; return a coroutine when it needs to wait."""
        try:
            message: ClientMessage = parse_client_message(raw)
        except ProtocolError as exc:
            if self.identity is None:
                self._refuse_before_hello(raw)
                return None
            self._services.metrics.bad_requests += 1
            log.info("session %s: bad request: %s", self.id, exc)
            self.error(ErrorCode.BAD_REQUEST, str(exc), exc.request_id)
            return None
        identity = self.identity
        if identity is None:
            if isinstance(message, Hello):
                return self._hello(message)
            self._refuse_before_hello(raw)
            return None
        if isinstance(message, Ping):
            self.send(Pong(id=message.id, ts=time.time_ns() // 1_000_000))
        elif isinstance(message, Ack):
            self._services.metrics.acks += len(message.ids)
            self._ack(identity, message)
        elif isinstance(message, Subscribe):
            return self._subscribe(identity, message)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(identity, message)
        elif isinstance(message, Mutate):
            return self._mutate(identity, message)
        elif isinstance(message, Pull):
            return self._pull(identity, message)
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

    def _ack(self, identity: Identity, message: Ack) -> None:
        """Record the acks in the background (they are batched with the node's
        other receipt steps); a failure is reported to the phone."""
        count = len(message.ids)
        recorded = self._services.dispatch.acked(identity.user, self.device, list(message.ids))

        def reported(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                log.warning("session %s: ack of %d event(s) not recorded", self.id, count)
                self.error(
                    ErrorCode.UNAVAILABLE, "ack not recorded: backend unavailable; ack again"
                )

        recorded.add_done_callback(reported)

    # ------------------------------------------------------------ delta sync

    async def _mutate(self, identity: Identity, message: Mutate) -> None:
        limit = self._services.settings.sync_max_mutations
        if len(message.mutations) > limit:
            self.error(
                ErrorCode.TOO_LARGE,
                f"at most {limit} mutations per mutate; send the rest in another",
                message.id,
            )
            return
        try:
            results = await self._services.sync.mutate(
                actor_of(identity, self.device), message.mutations
            )
        except BackendUnavailable:
            self.error(
                ErrorCode.UNAVAILABLE,
                "backend unavailable; send the mutations again (same mids)",
                message.id,
            )
            return
        self.send(Mutated(id=message.id, results=[MutationResult.from_dict(r) for r in results]))

    async def _pull(self, identity: Identity, message: Pull) -> None:
        try:
            reply = await self._services.sync.pull(
                actor_of(identity, self.device), message.cursor, message.types, message.limit
            )
        except SyncError as exc:
            self.error(exc.code, exc.message, message.id)
            return
        except BackendUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "backend unavailable; pull again", message.id)
            return
        self.send(
            Changes(
                id=message.id,
                changes=[Change.from_dict(change) for change in reply["changes"]],
                cursor=reply["cursor"],
                more=reply["more"],
                snapshot=reply.get("snapshot", False),
            )
        )

    # ------------------------------------------------------------------- hello

    async def _hello(self, hello: Hello) -> None:
        services = self._services
        settings = services.settings
        try:
            identity = services.verifier.verify(hello.token or self.conn.header_token)
        except AuthError as exc:
            log.info("connection %s refused: %s (device %s)", self.conn.peer, exc, hello.device)
            self.close(CloseCode.UNAUTHORIZED, str(exc))
            return
        self.identity = identity
        self.device = hello.device
        self.origin = (identity.user, hello.device)
        self.conn.hello_received()
        plan = plan_subscriptions(identity, hello.subs, settings.max_subscriptions)
        # The per-user cap is checked while the channels open: their round trips
        # overlap (a refused session's subscriptions go with its teardown).
        admission = asyncio.ensure_future(services.presence.admit(self))
        opened = []
        try:
            # One after the other: most channels open without a round trip (their
            # feed is live), and a task per channel would cost more than it saves.
            for channel in plan.allowed:
                opened.append(await self._open(channel, plan.wanted[channel]))
            admitted = await admission
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during hello", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; retry")
            return
        finally:
            if not admission.done():
                admission.cancel()
            elif not admission.cancelled():
                admission.exception()  # retrieved: raised above, or left with the open's
        if not admitted:
            limit = settings.max_connections_per_user
            log.info(
                "session %s refused: user %s has %d connections", self.id, identity.user, limit
            )
            self.close(CloseCode.RATE_LIMITED, f"at most {limit} connections per user")
            return
        self.send(
            welcome(
                session=self.id,
                identity=identity,
                node=settings.node_id,
                heartbeat_s=settings.heartbeat_s,
                poll=services.poll_intervals,
                plan=plan,
                opened={
                    channel: (str(top), recovered)
                    for channel, (top, recovered, _) in zip(plan.allowed, opened, strict=True)
                },
            )
        )
        services.registry.add_session(self)
        services.presence.opened(self)
        log.info(
            "session %s open: user %s role %s device %s from %s, %s, %d channel(s)",
            self.id,
            identity.user,
            identity.role,
            self.device,
            self.conn.peer,
            self.conn.subprotocol,
            len(plan.allowed),
        )
        subscriptions = [self.subs[channel] for channel in plan.allowed]
        try:
            for subscription, (top, _, first_page) in zip(subscriptions, opened, strict=True):
                await self._replay(subscription, first_page, top)
            await self._send_pending(identity)
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            for subscription in subscriptions:
                subscription.go_live()

    async def _send_pending(self, identity: Identity) -> None:
        """Write the user's pending critical events not written yet (after the
        replays, before any live event)."""
        pending = await self._services.ledger.pending(identity.user)
        await self._write_paced([e for e in pending if self.outbox.first_critical(e)])

    # ----------------------------------------------------------- subscriptions

    def _feed_lost(self, channel: str) -> None:
        self.close(CloseCode.SERVICE_RESTART, f"events of {channel} were lost; resume")

    async def _open(self, channel: str, since_text: str | None) -> tuple[Offset, bool, list[Event]]:
        """Attach a replaying subscription and read what it must replay.

        Returns the channel position to report, whether the client's offset was
        recovered, and the first page of events to replay.
        """
        services = self._services
        subscription = Subscription(channel, self.outbox.push, self.origin, self._feed_lost)
        self.subs[channel] = subscription
        try:
            feed = await services.hub.attach(channel, subscription)
            assert feed.position is not None  # set before the feed is ready
            if since_text is None:
                subscription.last_seq = feed.position.seq
                return feed.position, True, []
            since = Offset.parse(since_text)
            history = await services.history.read(
                channel, since, services.settings.replay_page_events
            )
        except BaseException:
            del self.subs[channel]
            services.hub.detach(channel, subscription)
            raise
        if not history.recovered or since is None:
            subscription.last_seq = history.top.seq
            return history.top, False, []
        subscription.last_seq = since.seq
        return history.top, True, history.events

    async def _write_paced(self, events: list[Event]) -> None:
        """Write events in paced frames (module docstring)."""
        conn, binary = self.conn, self.outbox.binary
        start, count = 0, len(events)
        while start < count and not conn.closing:
            end, size = start, 0
            while end < count and end - start < REPLAY_FRAME_EVENTS and size < REPLAY_FRAME_BYTES:
                size += len(events[end].body)
                end += 1
            await conn.drained()
            chunk = events[start:end]
            conn.write(chunk[0].frame(binary) if len(chunk) == 1 else events_frame(chunk, binary))
            start = end

    async def _replay(self, subscription: Subscription, page: list[Event], top: Offset) -> None:
        """Write ``page`` and the rest of the history up to ``top``. The caller
        then makes the subscription go live. Raises ``BackendUnavailable``."""
        services = self._services
        while page and not self.conn.closing:
            last = page[-1]
            page = self.outbox.replayable(page, self.origin)
            await self._write_paced(page)
            services.metrics.replayed_events += len(page)
            subscription.last_seq = last.seq
            if last.seq >= top.seq:
                break
            history = await services.history.read(
                subscription.channel, last.position, services.settings.replay_page_events
            )
            if not history.recovered:
                # Trimmed while we read: the client must learn of the gap.
                self.close(
                    CloseCode.SERVICE_RESTART, f"history of {subscription.channel} moved; resume"
                )
                break
            page = history.events

    async def _subscribe(self, identity: Identity, message: Subscribe) -> None:
        services = self._services
        channel = message.channel
        refusal = refuse_subscribe(
            identity, channel, self.subs, services.settings.max_subscriptions
        )
        if refusal is not None:
            log.info("session %s: subscribe refused: %s", self.id, refusal.message)
            self.refuse(refusal, message.id)
            return
        try:
            top, recovered, page = await self._open(channel, message.since)
        except BackendUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "backend unavailable; retry", message.id)
            return
        self.send(Subscribed(id=message.id, channel=channel, offset=str(top), recovered=recovered))
        services.presence.subscribed(self, channel)
        subscription = self.subs[channel]
        try:
            await self._replay(subscription, page, top)
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            subscription.go_live()

    def _unsubscribe(self, identity: Identity, message: Unsubscribe) -> None:
        channel = message.channel
        refusal = refuse_unsubscribe(identity, channel, self.subs)
        if refusal is not None:
            self.refuse(refusal, message.id)
            return
        subscription = self.subs.pop(channel)
        self._services.hub.detach(channel, subscription)
        self._services.presence.unsubscribed(self, channel)
        self.send(Unsubscribed(id=message.id, channel=channel))

    # ----------------------------------------------------------------- teardown

    def teardown(self, code: int | None) -> None:
        """The connection is gone: leave every feed, stop the worker, log once."""
        services = self._services
        if self.worker is not None:
            self.worker.cancel()
        self.outbox.discard()
        channels = list(self.subs)
        for channel, subscription in self.subs.items():
            services.hub.detach(channel, subscription)
        self.subs.clear()
        if self.identity is not None:
            services.registry.remove_session(self)
            services.presence.closed(self, channels)
            services.dispatch.forget(self.identity.user, list(self.outbox.critical_sent))
            log.info(
                "session %s closed: user %s device %s, code %s, after %.1f s",
                self.id,
                self.identity.user,
                self.device,
                code,
                time.monotonic() - self.opened_at,
            )
