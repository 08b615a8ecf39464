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

A connection lives on its token's ``exp`` (docs/protocol.md 1.16): one timer
per session (a loop handle, no task; cancelled at teardown) sends
``refresh_needed`` ahead of it and closes with 4001 at ``exp`` plus
``refresh_grace_s`` unless a ``refresh`` of the same user arrived; a refresh
re-arms it, and ends the subscriptions the new token no longer allows.
Nothing per event.

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
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fieldpush.backend.base import (
    ChannelRead,
    Device,
    Devices,
    DeviceState,
    HistoryReader,
    SessionOpener,
)
from fieldpush.delivery.access import AccessControl
from fieldpush.delivery.flusher import Flusher
from fieldpush.delivery.hub import Feed, Hub
from fieldpush.delivery.outbox import Outbox
from fieldpush.delivery.registry import Registry
from fieldpush.delivery.rules import (
    Rate,
    RateLimit,
    Refusal,
    plan_subscriptions,
    refresh_due_at,
    refuse_refresh,
    refuse_subscribe,
    refuse_unsubscribe,
    revoked_channels,
    welcome,
)
from fieldpush.delivery.subscription import Subscription
from fieldpush.errors import AccessRevoked, AuthError, BackendUnavailable
from fieldpush.events.event import Event, events_frame
from fieldpush.events.ids import Ids
from fieldpush.events.offsets import Offset
from fieldpush.identity.access import close_code_for, error_code_of
from fieldpush.identity.auth import Identity, TokenVerifier
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.engine import SyncEngine, SyncError, actor_of
from fieldpush.tracking.dispatch import Dispatch
from fieldpush.tracking.presence import PresenceTracker
from fieldpush.trail.recorder import AuditRecorder
from fieldpush.trail.refusals import LoginRefusals, reason_of
from fieldpush_client.protocol import (
    Ack,
    Change,
    Changes,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ErrorMsg,
    Hello,
    Mutate,
    Mutated,
    MutationResult,
    Ping,
    Pong,
    ProtocolError,
    Pull,
    Refresh,
    Refreshed,
    RefreshNeeded,
    ServerMessage,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Wipe,
    Wiped,
    parse_client_message,
    request_id_of,
)

__all__ = ["Link", "Session", "SessionServices"]

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
    def source(self) -> str:
        """The peer's address without its port (``""`` when unknown): a refusal's source."""

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


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a session needs of its node, built once by the node."""

    settings: Settings
    ids: Ids
    verifier: TokenVerifier
    access: AccessControl
    hub: Hub
    history: HistoryReader
    opener: SessionOpener
    devices: Devices
    audit: AuditRecorder
    login_refusals: LoginRefusals
    presence: PresenceTracker
    dispatch: Dispatch
    sync: SyncEngine
    registry: Registry[Any]
    flusher: Flusher
    metrics: Metrics
    #: ``welcome.poll``.
    poll_intervals: Mapping[str, float]


def _ms(seconds: float) -> int:
    """A time of the Unix epoch in the protocol's unit, ms."""
    return int(seconds * 1000)


def _offset(text: str | None) -> Offset | None:
    """A client's offset; None for none, and for one that is not ours."""
    return Offset.parse(text) if text is not None else None


class _DeviceWiped(Exception):
    """The hello came from a device that was wiped: close 4003."""


@dataclass(frozen=True, slots=True)
class _Replay:
    """What one subscription replays before it goes live."""

    subscription: Subscription
    #: The offset reported to the client; the replay reaches it.
    top: Offset
    recovered: bool
    #: The first page, read with the feed's opening.
    first: list[Event]
    #: The client's offset (None: no replay).
    since: Offset | None


class Session:
    """The protocol state of one connection. Created by the gateway at upgrade."""

    __slots__ = (
        "_services",
        "app",
        "conn",
        "device",
        "expiry",
        "id",
        "identity",
        "inbox",
        "opened_at",
        "origin",
        "outbox",
        "rate",
        "since_ms",
        "subs",
        "wiping",
        "worker",
    )

    def __init__(self, services: SessionServices, conn: Link) -> None:
        self._services = services
        settings = services.settings
        self.conn = conn
        self.id = services.ids.new_session_id()
        self.identity: Identity | None = None
        self.device = ""
        self.app = ""
        #: ``(user, device)`` once past hello: record changes it made are not echoed.
        self.origin: tuple[str, str] | None = None
        self.subs: dict[str, Subscription] = {}
        #: The id of the ``wipe`` sent to this device (then it gets nothing more).
        self.wiping: str | None = None
        self.outbox = Outbox(
            conn,
            conn.binary,
            services.flusher,
            on_critical=self._critical_written,
            low_interval_s=settings.poll_intervals_s["low"],
            max_held=settings.max_held_events,
        )
        self.inbox: deque[dict[str, Any]] = deque()
        self.worker: asyncio.Task[None] | None = None
        #: The token's timer past hello: ``refresh_needed``, then the close.
        self.expiry: asyncio.TimerHandle | None = None
        self.opened_at = time.monotonic()
        self.since_ms = time.time_ns() // 1_000_000
        self.rate = RateLimit(settings.rate_limit_per_s, settings.rate_limit_burst, time.monotonic)

    # ----------------------------------------------------------------- output

    def _critical_written(self, event_id: str) -> None:
        identity = self.identity
        if identity is not None:  # criticals are written only past hello
            self._services.dispatch.delivered(event_id, identity.user, self.device)

    def _push_readable(self, event: Event) -> None:
        """The outbox's push for a ``records:`` subscription: only readable events."""
        if self._may_read(event):
            self.outbox.push(event)

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
            self._services.metrics.rate_limited["in_flight"] += 1
            self.close(CloseCode.RATE_LIMITED, "too many requests in flight")
            return
        self.inbox.append(message)
        if self.worker is None:
            self._drain()

    def _rate_limited(self, message: dict[str, Any], verdict: Rate) -> None:
        self._services.metrics.rate_limited["messages"] += 1
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
            if raw.get("type") == "mutate":
                sent = raw.get("mutations")
                self._services.sync.refuse_batch(
                    actor_of(self.identity, self.device),
                    ErrorCode.BAD_REQUEST,
                    len(sent) if isinstance(sent, list) else None,
                )
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
        elif isinstance(message, Wiped):
            return self._wiped(identity, message)
        elif self.wiping is not None and not isinstance(message, Refresh):
            request_id = getattr(message, "id", None)
            self.error(ErrorCode.FORBIDDEN, "this device is being wiped; answer wipe", request_id)
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
        elif isinstance(message, Refresh):
            self._refresh(identity, message)
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
        self._services.metrics.handshake_refused(ErrorCode.UNAUTHORIZED.value)
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
            self._services.sync.refuse_batch(
                actor_of(identity, self.device), ErrorCode.TOO_LARGE, len(message.mutations)
            )
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
                actor_of(identity, self.device),
                message.cursor,
                message.types,
                message.limit,
                message.classes,
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
        """Token, then the live feeds of the allowed channels, then one backend
        step (cap, presence, audience, positions, first replay pages, pending
        events: :meth:`~fieldpush.backend.base.SessionOpener.open_session`),
        then ``welcome``, the replays and the pending events."""
        services = self._services
        settings = services.settings
        try:
            identity = services.verifier.verify(hello.token or self.conn.header_token)
        except AuthError as exc:
            services.login_refusals.note(self.conn.source, reason_of(exc))
            log.info("connection %s refused: %s (device %s)", self.conn.peer, exc, hello.device)
            services.metrics.handshake_refused(error_code_of(exc))
            self.close(close_code_for(exc), str(exc))
            return
        self.identity = identity
        self.device = hello.device
        self.app = hello.app or ""
        self.origin = (identity.user, hello.device)
        self.conn.hello_received()
        plan = plan_subscriptions(identity, hello.subs, settings.max_subscriptions)
        try:
            starts = await self._open_all(plan.allowed, plan.wanted)
        except _DeviceWiped:
            log.info(
                "session %s refused: device %s of %s was wiped", self.id, self.device, identity.user
            )
            services.metrics.handshake_refused(ErrorCode.FORBIDDEN.value)
            self.close(CloseCode.FORBIDDEN, "device wiped")
            return
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during hello", self.id)
            services.metrics.handshake_refused(ErrorCode.UNAVAILABLE.value)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; retry")
            return
        if starts is None:
            limit = settings.max_connections_per_user
            log.info(
                "session %s refused: user %s has %d connections", self.id, identity.user, limit
            )
            services.metrics.rate_limited["connections_per_user"] += 1
            services.metrics.handshake_refused(ErrorCode.RATE_LIMITED.value)
            self.close(CloseCode.RATE_LIMITED, f"at most {limit} connections per user")
            return
        replays, pending, device = starts
        self.send(
            welcome(
                session=self.id,
                identity=identity,
                node=settings.node_id,
                heartbeat_s=settings.heartbeat_s,
                poll=services.poll_intervals,
                plan=plan,
                opened={
                    replay.subscription.channel: (str(replay.top), replay.recovered)
                    for replay in replays
                },
            )
        )
        self._watch_expiry(identity)
        services.registry.add_session(self, identity.user)
        try:  # a disable that arrived while the session opened found nothing to close
            services.access.admit(identity)
        except AuthError as exc:
            log.info("session %s refused once open: %s", self.id, exc)
            services.metrics.handshake_refused(error_code_of(exc))
            self.close(close_code_for(exc), str(exc))
            return
        services.metrics.handshakes_accepted += 1
        wipe_id = services.access.wipe_pending(identity.user, self.device)
        if wipe_id is None and device is not None and device.state is DeviceState.WIPE_PENDING:
            wipe_id = device.wipe_id
        if wipe_id is not None:  # before anything else: no replay, no pending event
            self.wipe(wipe_id)
            return
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
        try:
            for replay in replays:
                await self._replay(replay)
            # After the replays, before any live event (docs/protocol.md 1.11).
            await self._write_paced([e for e in pending if self.outbox.first_critical(e)])
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            for replay in replays:
                replay.subscription.go_live()

    async def _open_all(
        self, channels: Sequence[str], wanted: Mapping[str, str | None]
    ) -> tuple[list[_Replay], list[Event], Device | None] | None:
        """Attach a replaying subscription to each channel's live feed, then take
        the hello's one backend step. Returns the replays, in ``channels``
        order, the user's pending events and the device's registry entry;
        None when the per-user cap refuses the session. Raises
        ``BackendUnavailable``, and ``_DeviceWiped`` for a wiped device."""
        services = self._services
        hub = services.hub
        #: (subscription, feed, whether this session opened it, the client's offset text)
        joined: list[tuple[Subscription, Feed, bool, str | None]] = []
        owed: list[Feed] = []  # feeds this session opened: it owes them their position
        try:
            for channel in channels:
                subscription = self._subscription(channel)
                feed, opened = await hub.join(channel, subscription)
                if opened:
                    owed.append(feed)
                joined.append((subscription, feed, opened, wanted[channel]))
            page = services.settings.replay_page_events
            reads = [
                ChannelRead(subscription.channel, _offset(since), page)
                for subscription, _, opened, since in joined
                if opened or since is not None
            ]
            step = await services.opener.open_session(services.presence.opening(self, reads))
            if step.device is not None and step.device.state is DeviceState.WIPED:
                raise _DeviceWiped
            if not await services.presence.admit(step):
                return None
            found = dict(zip((read.channel for read in reads), step.histories, strict=True))
            for feed in owed:
                hub.opened(feed, found[feed.channel].top)
            owed.clear()
            for _, feed, _, _ in joined:
                if not feed.ready.done():  # opened by another session: its step is under way
                    await asyncio.shield(feed.ready)
        finally:
            for feed in owed:
                hub.abandon(feed)
        replays = []
        for subscription, feed, _, since_text in joined:
            assert feed.position is not None  # the feed is ready
            since = _offset(since_text)
            history = found[subscription.channel] if since_text is not None else None
            top, recovered, first = subscription.begin(since, history, feed.position)
            replays.append(_Replay(subscription, top, recovered, first, since))
        return replays, step.pending, step.device

    # ----------------------------------------------------------- subscriptions

    def _feed_lost(self, channel: str) -> None:
        self.close(CloseCode.SERVICE_RESTART, f"events of {channel} were lost; resume")

    def _subscription(self, channel: str) -> Subscription:
        """A new replaying subscription of this session (left by teardown). A
        ``records:`` channel's events pass the reader's read permissions first
        (decided once here, so other channels' deliveries pay nothing)."""
        push = self._push_readable if channel.startswith("records:") else self.outbox.push
        subscription = Subscription(channel, push, self.origin, self._feed_lost)
        self.subs[channel] = subscription
        return subscription

    async def _open(self, channel: str, since_text: str | None) -> _Replay:
        """Attach a replaying subscription and read what it must replay
        (``subscribe``). Raises ``BackendUnavailable``."""
        services = self._services
        subscription = self._subscription(channel)
        try:
            feed = await services.hub.attach(channel, subscription)
            since = _offset(since_text)
            history = None
            if since_text is not None:
                history = await services.history.read(
                    channel, since, services.settings.replay_page_events
                )
        except BaseException:
            del self.subs[channel]
            services.hub.detach(channel, subscription)
            raise
        assert feed.position is not None  # the feed is ready
        top, recovered, first = subscription.begin(since, history, feed.position)
        return _Replay(subscription, top, recovered, first, since)

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

    async def _replay(self, replay: _Replay) -> None:
        """Write the first page and the rest of the history up to ``replay.top``.
        The caller then makes the subscription go live. Raises ``BackendUnavailable``."""
        services = self._services
        subscription, page, position = replay.subscription, replay.first, replay.since
        while not self.conn.closing:
            if page:
                last = page[-1]
                page = self.outbox.replayable(page, self.origin)
                if subscription.channel.startswith("records:"):
                    page = [event for event in page if self._may_read(event)]
                await self._write_paced(page)
                services.metrics.replayed_events += len(page)
                subscription.last_seq, position = last.seq, last.position
            if position is None or subscription.last_seq >= replay.top.seq:
                break
            history = await services.history.read(
                subscription.channel, position, services.settings.replay_page_events
            )
            if not history.recovered:
                # Trimmed while we read: the client must learn of the gap.
                self.close(
                    CloseCode.SERVICE_RESTART, f"history of {subscription.channel} moved; resume"
                )
                break
            page = history.events
            if not page:
                break

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
            replay = await self._open(channel, message.since)
        except BackendUnavailable:
            self.error(ErrorCode.UNAVAILABLE, "backend unavailable; retry", message.id)
            return
        self.send(
            Subscribed(
                id=message.id, channel=channel, offset=str(replay.top), recovered=replay.recovered
            )
        )
        services.presence.subscribed(self, channel)
        try:
            await self._replay(replay)
        except BackendUnavailable:
            log.warning("session %s: backend unavailable during the replay", self.id)
            self.close(CloseCode.INTERNAL_ERROR, "backend unavailable; resume")
        finally:
            replay.subscription.go_live()

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

    # -------------------------------------------------------------- remote wipe

    def wipe(self, wipe_id: str) -> None:
        """Send ``wipe`` and serve nothing more: every subscription ends (no
        ``unsubscribed``), events not yet written are dropped, and any request
        but ``wiped``, ``ping`` and ``refresh`` gets ``error`` ``forbidden``."""
        if self.wiping is not None:
            return
        self.wiping = wipe_id
        services = self._services
        for channel, subscription in self.subs.items():
            services.hub.detach(channel, subscription)
            services.presence.unsubscribed(self, channel)
        self.subs.clear()
        self.outbox.discard()
        self.send(Wipe(id=wipe_id))

    async def _wiped(self, identity: Identity, message: Wiped) -> None:
        """The device erased its store: record it, then close with 4003 (its
        later hellos are refused with 4003 too)."""
        if message.id != self.wiping:
            self.error(ErrorCode.BAD_REQUEST, "wiped: no wipe with that id was sent")
            return
        audit: dict[str, Any] = {
            "actor": identity.user, "role": identity.role, "device": self.device,
            "action": "device.wiped", "target": f"device/{identity.user}/{self.device}",
        }  # fmt: skip
        try:
            await self._services.devices.confirm_wipe(identity.user, self.device, message.id)
        except BackendUnavailable:
            self._services.audit.record(**audit, outcome="failed:backend_unavailable")
            log.warning(
                "session %s: wipe %s not recorded: backend unavailable", self.id, message.id
            )
            self.error(
                ErrorCode.UNAVAILABLE, "wipe not recorded: backend unavailable; send wiped again"
            )
            return
        self._services.audit.record(
            **audit,
            outcome="ok",
            fields={"state": ("wipe_pending", "wiped"), "wipe_id": (None, message.id)},
        )
        log.info("session %s: device %s of %s wiped", self.id, self.device, identity.user)
        self.close(CloseCode.FORBIDDEN, "device wiped")

    # ------------------------------------------------------------ token expiry

    def _watch_expiry(self, identity: Identity) -> None:
        """(Re)arm the session's one timer for ``identity``'s token:
        ``refresh_needed`` at :func:`~fieldpush.delivery.rules.refresh_due_at`."""
        now = time.time()
        lead = self._services.settings.refresh_lead_s
        self._arm(refresh_due_at(identity.expires_at, now, lead) - now, self._refresh_due)

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.expiry = asyncio.get_running_loop().call_later(max(delay_s, 0.0), callback)

    def _refresh_due(self) -> None:
        """Ask for a new token; close at ``exp`` plus ``refresh_grace_s`` without one."""
        identity = self.identity
        assert identity is not None  # armed only past hello
        self.send(RefreshNeeded(expires_at=_ms(identity.expires_at)))
        grace = self._services.settings.refresh_grace_s
        self._arm(identity.expires_at + grace - time.time(), self._expired)

    def _expired(self) -> None:
        self.expiry = None
        log.info("session %s: token expired, not refreshed", self.id)
        self.close(CloseCode.UNAUTHORIZED, "token expired")

    def _refresh(self, identity: Identity, message: Refresh) -> None:
        """A new token of the same user: the session runs on its identity from
        now on (permissions, expiry) and ends the subscriptions it no longer
        allows (``unsubscribed`` without ``id``, after ``refreshed``). A
        refused token changes nothing: ``error`` ``unauthorized``."""
        try:
            fresh = self._services.verifier.verify(message.token)
        except AccessRevoked as exc:  # the user is disabled, or this token revoked
            log.info("session %s: refresh refused: %s", self.id, exc)
            self.close(CloseCode.FORBIDDEN, str(exc))
            return
        except AuthError as exc:
            log.info("session %s: refresh refused: %s", self.id, exc)
            self.error(ErrorCode.UNAUTHORIZED, f"refresh refused: {exc}", message.id)
            return
        refusal = refuse_refresh(identity, fresh)
        if refusal is not None:
            log.info("session %s: %s (%s)", self.id, refusal.message, fresh.user)
            self.refuse(refusal, message.id)
            return
        self.identity = fresh
        self._watch_expiry(fresh)
        self.send(Refreshed(id=message.id, expires_at=_ms(fresh.expires_at)))
        services = self._services
        for channel in revoked_channels(fresh, self.subs):
            log.info("session %s: %s ended: the new token does not allow it", self.id, channel)
            services.hub.detach(channel, self.subs.pop(channel))
            services.presence.unsubscribed(self, channel)
            self.send(Unsubscribed(id=None, channel=channel))

    # ----------------------------------------------------------------- teardown

    def teardown(self, code: int | None) -> None:
        """The connection is gone: leave every feed, stop the worker, log once."""
        services = self._services
        if self.worker is not None:
            self.worker.cancel()
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.outbox.discard()
        channels = list(self.subs)
        for channel, subscription in self.subs.items():
            services.hub.detach(channel, subscription)
        self.subs.clear()
        if self.identity is not None:
            services.registry.remove_session(self, self.identity.user)
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
