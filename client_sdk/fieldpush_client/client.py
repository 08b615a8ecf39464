"""``PushClient``: a phone's connection to fieldpush, kept alive for it.

    async with PushClient(url, token=token, device="pixel-7", subscriptions=["team:a"]) as client:
        async for event in client.events():
            handle(event)

Guarantees to the application
    **At least once, ordered per channel, de-duplicated.** Events are handed
    out in the order the server sent them. An event is *handled* when the
    same ``events()`` loop asks for the next event, i.e. when the loop body
    for it ran to its end. Only then is its offset recorded in
    the :class:`~fieldpush_client.store.OffsetStore` and, for a ``critical`` event,
    its ``ack`` sent (``auto_ack=True``, the default; acks of one event-loop
    iteration share a message). An event whose loop body raised (or left the
    loop by ``break`` or ``return``) is not handled: the next ``events()``
    loop starts with it again. The client
    resumes from the recorded offsets after every reconnect. Events already
    handed out are skipped by id (the last ``dedupe_window`` ids); a handled
    ``critical`` event the server sends again (its ack was lost) is acked
    again, not handed out. With ``auto_ack=False`` the application calls
    :meth:`PushClient.ack` itself.

    **Reconnects by itself** (to the next of its URLs, when it has several)
    after network errors and after close codes that
    :func:`~fieldpush_client.protocol.should_reconnect` allows, waiting
    :func:`~fieldpush_client.backoff.backoff_delays` between attempts (a ``goaway``
    instead makes it reconnect at a random point of the server's window). Close
    codes that retrying cannot fix (4001, 4003, 1007, 1009) end ``events()``
    with :class:`~fieldpush_client.errors.Unauthorized` (4003, a disabled
    account or revoked token: its subclass
    :class:`~fieldpush_client.errors.AccessRevoked`) or
    :class:`~fieldpush_client.errors.ConnectionClosedFatal`.

    **Long-poll fallback.** After ``fallback_after_failures`` connection
    attempts in a row that did not reach ``welcome``, the client receives by
    ``POST /v1/poll`` long polls (and acks by ``POST /v1/ack``) for
    ``socket_retry_s``, then tries the socket again; a ``welcome`` ends the
    fallback. Events come through the same queue with the same guarantees.

    **Polling schedules.** :meth:`PushClient.schedule_poll` runs a coroutine
    every ``welcome.poll[data_class]`` seconds, the interval the server
    advertises for data that is not pushed (e.g. visit plans every 900 s).

    **TLS.** ``wss://`` URLs (and the fallback's ``https://``) verify the
    node's certificate against the system's CAs, or against ``ssl``: a CA file
    or an :class:`ssl.SSLContext` (with a client certificate, for instance);
    see :mod:`fieldpush_client.tls`. A certificate that does not verify is a
    failed attempt like a network error: logged, retried with backoff.

    **Token refresh.** ``token`` is a string, or a provider: a function
    (plain or ``async``) that returns a current token. With a provider the
    client asks it for a token before every connection attempt (and every
    poll fallback window), and answers the server's ``refresh_needed`` by
    itself with a ``refresh`` carrying a token from it, so the connection
    outlives any one token (docs/protocol.md 1.16). With a plain string the
    server closes the socket with 4001 once that token has expired.
    A subscription the server ends after a refresh (``unsubscribed`` without
    ``id``: the new token no longer allows it) is dropped like a refused one.

    **Device registry.** ``hello`` names the app: ``app="dealer-app/2.3"``
    becomes ``dealer-app/2.3 fieldpush_client/<version>`` (the SDK's alone
    without it), which admins see in ``GET /v1/admin/users/{id}/devices``.

    **Remote wipe.** When an admin wipes this device, the server sends
    ``wipe``: the client forgets its offsets, awaits ``on_wipe`` (plain or
    ``async``: erase the app's stores and key material there, e.g.
    ``SyncStore``'s file), confirms with ``wiped``, and ``events()`` then ends
    with :class:`~fieldpush_client.errors.AccessRevoked` (4003, ``device
    wiped``); the device cannot connect again.

    **Backpressure.** At most ``queue_size`` events wait for the application;
    beyond that the client stops reading the socket, and a server that finds
    the phone too slow closes it (4008); the client then resumes without loss.

One ``events()`` loop at a time: the client's state follows one consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl as ssl_module
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from fieldpush_client import __version__
from fieldpush_client.backoff import backoff_delays
from fieldpush_client.errors import (
    AccessRevoked,
    ConnectionClosedFatal,
    NotConnected,
    PublishError,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from fieldpush_client.fallback import http_url_for, token_subject
from fieldpush_client.http import DispatcherClient, PollReply
from fieldpush_client.protocol import (
    MAX_APP_LENGTH,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Ack,
    ClientRequest,
    CloseCode,
    DecodeError,
    ErrorMsg,
    EventMsg,
    Goaway,
    Hello,
    Mutated,
    Mutation,
    Ping,
    Pong,
    ProtocolError,
    Refresh,
    Refreshed,
    RefreshNeeded,
    ServerMessage,
    Subscribe,
    Subscribed,
    UnknownMsg,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    Wipe,
    Wiped,
    codec_for,
    parse_server_message,
    should_reconnect,
    user_channel,
)
from fieldpush_client.store import MemoryOffsetStore, OffsetStore
from fieldpush_client.tasks import settle
from fieldpush_client.tls import SSLOption, ssl_context

__all__ = ["PushClient", "TokenProvider"]

log = logging.getLogger("fieldpush.client")

Reply = TypeVar("Reply", bound=ServerMessage)

#: Returns a current token, at once or awaited (``PushClient(token=...)``).
TokenProvider = Callable[[], str | Awaitable[str]]

_CODECS = {"json": SUBPROTOCOL_JSON, "msgpack": SUBPROTOCOL_MSGPACK}

#: How a poll's 403 names the channel it refused (docs/protocol.md, 2.3).
_NOT_READABLE = "not allowed to read "

#: Failures of one connection attempt; the client tries again.
_RETRYABLE = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, ProtocolError, DecodeError)


class PushClient:
    """A connection to a fieldpush node that survives disconnects. See the module docstring."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | TokenProvider,
        device: str,
        codec: str = "json",
        store: OffsetStore | None = None,
        subscriptions: Iterable[str] = (),
        auto_ack: bool = True,
        backoff: Callable[[], Iterator[float]] = backoff_delays,
        dedupe_window: int = 10_000,
        queue_size: int = 1000,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        fallback_after_failures: int = 3,
        socket_retry_s: float = 60.0,
        poll_wait_s: float = 25.0,
        http_url: str | None = None,
        on_recovery_failed: Callable[[str], None] | None = None,
        ssl: SSLOption | None = None,
        app: str | None = None,
        on_wipe: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        if codec not in _CODECS:
            raise ValueError(f"codec must be 'json' or 'msgpack', not {codec!r}")
        #: Node URLs, tried in turn (one URL: a load balancer's, usually).
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("need at least one URL")
        if fallback_after_failures < 0 or socket_retry_s <= 0 or poll_wait_s < 0:
            raise ValueError(
                "need fallback_after_failures >= 0 (0: never), socket_retry_s > 0, poll_wait_s >= 0"
            )
        self._url_turn = itertools.cycle(self.urls)
        self.url = self.urls[0]
        self._token_source = token
        #: The token last used (``hello``, ``refresh``, the fallback's polls);
        #: with a provider, "" until its first one.
        self.token = token if isinstance(token, str) else ""
        self.device = device
        #: ``hello.app``: the application's name and version, then the SDK's.
        self.app = (
            f"{app} fieldpush_client/{__version__}" if app else f"fieldpush_client/{__version__}"
        )
        if len(self.app) > MAX_APP_LENGTH:
            raise ValueError(f"app is too long: hello.app has at most {MAX_APP_LENGTH} characters")
        self.auto_ack = auto_ack
        self._subprotocol = _CODECS[codec]
        self._codec = codec_for(self._subprotocol)
        self._store = store if store is not None else MemoryOffsetStore()
        self._wanted: set[str] = set(subscriptions)
        self._backoff = backoff
        #: Ids handed out recently, oldest first: True once handled.
        self._seen: OrderedDict[str, bool] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._queue: asyncio.Queue[EventMsg | BaseException] = asyncio.Queue(queue_size)
        #: The event handed out whose loop body has not returned yet.
        self._unfinished: EventMsg | None = None
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._fallback_after = fallback_after_failures
        self._socket_retry_s = socket_retry_s
        self._poll_wait_s = poll_wait_s
        self._http_url = http_url
        #: For ``wss://`` URLs and the fallback's ``https://`` (fieldpush_client.tls).
        self._ssl = ssl_context(ssl)
        self._on_recovery_failed = on_recovery_failed or _warn_recovery_failed
        self._on_wipe = on_wipe
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ws: ClientConnection | None = None
        #: The poll fallback's HTTP client, while it polls.
        self._http: DispatcherClient | None = None
        #: Acks under way on ``_http``: it is closed only once they have ended.
        self._http_acks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        #: Set (and replaced) at every ``welcome``.
        self._next_welcome = asyncio.Event()
        self._welcomes = 0
        #: Times the server was reached (a ``welcome``, a poll answered), and
        #: the event set (and replaced) at each.
        self._contacts = 0
        self._next_contact = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._goaway: asyncio.Task[None] | None = None
        #: Answers the current ``refresh_needed``.
        self._refresher: asyncio.Task[None] | None = None
        self._reconnect_now = False
        self._pending_acks: list[str] = []
        #: Critical events handed out (or waiting for the app) whose ack is not sent yet.
        self._open_critical: set[str] = set()
        #: When the last critical event arrived (``loop.time()``), None: never.
        self._critical_at: float | None = None
        self._ack_task: asyncio.Task[None] | None = None
        self._schedules: dict[str, Callable[[], Awaitable[object]]] = {}
        self._schedule_tasks: list[asyncio.Task[None]] = []
        #: The server's ``welcome`` of the current (or last) connection.
        self.session: Welcome | None = None
        #: How events arrive now: ``"websocket"``, ``"poll"`` (the fallback) or ``None``.
        self.transport: str | None = None

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> PushClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (``async with`` does it for you)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            for data_class, fetch in self._schedules.items():
                self._start_schedule(data_class, fetch)

    async def close(self) -> None:
        """Disconnect and stop reconnecting. Acks not sent by then are dropped
        (the server sends those events again on the next connection). The
        poll fallback's HTTP connections are closed when this returns,
        including one still being opened for an ack."""
        tasks = [
            self._goaway,
            self._refresher,
            self._task,
            self._ack_task,
            *self._schedule_tasks,
        ]
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._goaway = self._refresher = self._ack_task = None
        self._schedule_tasks = []
        if self._ws is not None:
            await self._ws.close()

    @property
    def connected(self) -> bool:
        """Whether a socket is open and past ``welcome``."""
        return self._connected.is_set()

    @property
    def offsets(self) -> dict[str, str]:
        """The recorded offsets (a copy)."""
        return self._store.get_all()

    async def wait_connected(self, timeout_s: float | None = None) -> Welcome:
        """Wait until the client is connected and past ``welcome``."""
        await asyncio.wait_for(self._connected.wait(), timeout_s)
        assert self.session is not None
        return self.session

    async def welcome_after(self, count: int) -> int:
        r"""Wait until more than ``count`` ``welcome``\ s were received since the
        start (0: the first); return how many there were."""
        while self._welcomes <= count:
            await self._next_welcome.wait()
        return self._welcomes

    async def contact_after(self, count: int) -> int:
        """Wait until the server was reached more than ``count`` times since
        the start (a ``welcome``, or a long poll answered on the fallback);
        return how many times. A caller with work for the server (an offline
        queue) waits on this rather than on a timer."""
        while self._contacts <= count:
            await self._next_contact.wait()
        return self._contacts

    def _contacted(self) -> None:
        self._contacts += 1
        self._next_contact.set()
        self._next_contact = asyncio.Event()

    async def push_by_http(self, mutations: Sequence[Mutation]) -> Mutated:
        """Send ``mutations`` as ``POST /v1/sync/push`` of this device (the
        same ``mid``\\ s de-duplicate against the socket's ``mutate``), with a
        current token, on a connection of its own: the upload path that works
        while the socket does not (docs/protocol.md 3.3). Raises
        ``httpx.HTTPError`` (it did not get through),
        :class:`~fieldpush_client.errors.PublishError` (refused, with the
        HTTP status) or ProtocolError (an answer that is not a ``mutated``)."""
        body = {"mutations": [mutation.to_wire() for mutation in mutations], "device": self.device}
        token = await self._fresh_token()
        async with DispatcherClient(
            self._http_url or http_url_for(self.url),
            token,
            timeout_s=self._request_timeout_s,
            ssl=self._ssl,
        ) as http:
            payload = await http.sync_push(body)
        if not isinstance(payload, dict):
            raise ProtocolError("the answer to POST /v1/sync/push is not an object")
        reply = parse_server_message({**payload, "type": "mutated", "id": payload.get("id", 0)})
        if not isinstance(reply, Mutated):  # never: the type is set above
            raise ProtocolError(f"expected mutated, got {reply!r}")
        return reply

    async def request(self, message: dict[str, Any]) -> Any:
        """Send a request (``ping``, ``mutate``, ``pull``, ...; its ``id`` is
        added) and return the typed reply. Raises NotConnected, RequestTimeout,
        or RequestError for an ``error`` reply."""
        return await self._request(lambda request_id: {**message, "id": request_id})

    async def call(self, request: Callable[[int], ClientRequest], reply: type[Reply]) -> Reply:
        """Send the request that ``request(id)`` builds (a fresh ``id``) and
        return its reply, a ``reply`` message. Raises as :meth:`request` does,
        and ProtocolError when the server answers with another type."""
        answer = await self._request(lambda request_id: request(request_id).to_wire())
        if not isinstance(answer, reply):
            raise ProtocolError(f"expected {reply.__name__}, got {answer!r}")
        return answer

    # ------------------------------------------------------------ application

    async def events(self) -> AsyncIterator[EventMsg]:
        """Events in order, each handled once (see the module docstring)."""
        while True:
            event = self._unfinished
            if event is None:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    raise item
                event = self._unfinished = item
            yield event
            self._unfinished = None
            self._handled(event)

    def _handled(self, event: EventMsg) -> None:
        self._store.set(event.channel, event.offset)
        if event.id in self._seen:
            self._seen[event.id] = True
        if self.auto_ack and event.priority == "critical":
            self._ack_soon([event.id])

    async def subscribe(self, channel: str, since: str | None = None) -> Subscribed:
        """Subscribe (and stay subscribed across reconnects). ``since`` defaults
        to the recorded offset of the channel, if any. Needs the socket
        (:class:`~fieldpush_client.errors.NotConnected` otherwise); on the poll
        fallback the channel is polled from then on."""
        self._wanted.add(channel)
        if since is None:
            since = self._store.get_all().get(channel)
        reply = await self.call(partial(Subscribe, channel=channel, since=since), Subscribed)
        if since is None or not reply.recovered:
            self._store.set(channel, reply.offset)  # where to resume from
        if not reply.recovered:
            self._on_recovery_failed(channel)
        return reply

    async def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._store.forget(channel)
        await self.call(partial(Unsubscribe, channel=channel), Unsubscribed)

    async def ack(self, *events: EventMsg | str) -> None:
        """Acknowledge events (by event or id). Sent at once when connected
        (by socket or by the poll fallback), otherwise as soon as the client
        is connected again."""
        self._pending_acks.extend(e if isinstance(e, str) else e.id for e in events)
        await self._flush_acks()

    def critical_busy(self, quiet_s: float) -> bool:
        """Whether the socket carries critical events: one arrived within the
        last ``quiet_s`` seconds, or one is not acked yet (waiting for the
        application, or its ack not sent). Batch sync waits while it is
        (:mod:`fieldpush_client.batch`)."""
        if self._open_critical:
            return True
        at = self._critical_at
        return at is not None and asyncio.get_running_loop().time() - at < quiet_s

    async def ping(self) -> float:
        """Round trip of a protocol ``ping``, in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.call(Ping, Pong)
        return loop.time() - started

    def schedule_poll(self, data_class: str, fetch: Callable[[], Awaitable[object]]) -> None:
        """Await ``fetch()`` every ``welcome.poll[data_class]`` seconds (drawn
        from 90-110 % of it, so that phones spread out), the first time one
        interval after the first ``welcome``. The interval is read again from
        the latest ``welcome`` before each wait. An exception from ``fetch`` is
        logged and the schedule goes on. A class the server does not advertise
        is not run (logged once per ``welcome``)."""
        if data_class in self._schedules:
            raise ValueError(f"{data_class!r} is already scheduled")
        self._schedules[data_class] = fetch
        if self._task is not None:
            self._start_schedule(data_class, fetch)

    def _start_schedule(self, data_class: str, fetch: Callable[[], Awaitable[object]]) -> None:
        task = asyncio.get_running_loop().create_task(self._poll_every(data_class, fetch))
        self._schedule_tasks.append(task)

    async def _poll_every(self, data_class: str, fetch: Callable[[], Awaitable[object]]) -> None:
        while True:
            interval = self.session.poll.get(data_class) if self.session is not None else None
            if interval is None or interval <= 0:
                if self.session is not None:
                    log.warning("fieldpush advertises no poll interval for %r", data_class)
                await self._next_welcome.wait()
                continue
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))
            try:
                await fetch()
            except Exception:
                log.exception("fieldpush poll of %r failed", data_class)

    async def _request(self, wire_for: Callable[[int], dict[str, Any]]) -> Any:
        """Send the message ``wire_for(id)`` and wait for the answer to ``id``."""
        ws = self._ws
        if ws is None or not self.connected:
            try:
                await asyncio.wait_for(self._connected.wait(), self._request_timeout_s)
            except TimeoutError:
                raise NotConnected(f"not connected to {self.url}") from None
            ws = self._ws
            assert ws is not None
        request_id = next(self._ids)
        message = wire_for(request_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            await self._send(ws, message)
            return await asyncio.wait_for(future, self._request_timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"no answer to {message['type']}") from None
        finally:
            self._replies.pop(request_id, None)

    # -------------------------------------------------------------------- acks

    def _ack_soon(self, ids: list[str]) -> None:
        """Queue acks; they leave together at the next event-loop iteration."""
        self._pending_acks.extend(ids)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        """Send the pending acks by whichever transport is up; keep them if none
        is, or if sending them failed. On the poll fallback the ``POST /v1/ack``
        runs as a task that the fallback owns (see :meth:`_poll_for`): a
        caller cancelled meanwhile stops waiting for it, not the request."""
        if not self._pending_acks:
            return
        ids, self._pending_acks = self._pending_acks, []
        if self._ws is not None and self.connected:
            try:
                await self._send(self._ws, Ack(ids=tuple(ids)).to_wire())
                self._open_critical.difference_update(ids)
                return
            except (ConnectionClosed, OSError) as exc:
                log.info("fieldpush acks not sent (%s); sending them after reconnecting", exc)
        elif self._http is not None:
            task = asyncio.get_running_loop().create_task(self._ack_by_http(self._http, ids))
            self._http_acks.add(task)
            task.add_done_callback(self._http_acks.discard)
            await asyncio.wait([task])
            if not task.cancelled():
                task.result()  # an exception not caught there is a bug: the caller's
            return
        self._pending_acks[:0] = ids

    async def _ack_by_http(self, http: DispatcherClient, ids: list[str]) -> None:
        """``POST /v1/ack`` of ``ids``; they are pending again if it fails."""
        try:
            await http.ack(ids, self.device)
        except (OSError, httpx.HTTPError, PublishError) as exc:
            log.info("fieldpush acks not sent (%s); sending them after reconnecting", exc)
            self._pending_acks[:0] = ids
        else:
            self._open_critical.difference_update(ids)

    # ------------------------------------------------------------- connection

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        """Write one message (a wire dict, see ``to_wire``) with the connection's codec."""
        data = self._codec.encode(message)
        await ws.send(data if self._codec.binary else data.decode())

    async def _run(self) -> None:
        delays = self._backoff()
        failures = 0  # connection attempts in a row that did not reach welcome
        while True:
            welcomes = self._welcomes
            try:
                if self._fallback_after and failures >= self._fallback_after:
                    await self._poll_for(self._socket_retry_s, failures == self._fallback_after)
                await self._connection()
            except ConnectionClosedFatal as exc:
                await self._queue.put(exc)
                return
            except _RETRYABLE as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
                    await self._queue.put(Unauthorized(exc.response.status_code, "refused"))
                    return
                log.info("fieldpush connection to %s failed: %s", self.url, exc)
            except Exception as exc:  # a bug: hand it to the application instead of dying unseen
                await self._queue.put(exc)
                return
            finally:
                self._disconnected()
            if self._welcomes != welcomes:  # it worked: start over
                delays = self._backoff()
                failures = 0
            else:
                failures += 1
            if self._reconnect_now:
                self._reconnect_now = False
                continue
            if not self._fallback_after or failures < self._fallback_after:
                await asyncio.sleep(next(delays))
            # else: straight on to the poll fallback

    def _disconnected(self) -> None:
        self._connected.clear()
        self._ws = None
        self.transport = None
        for future in self._replies.values():
            if not future.done():
                future.set_exception(NotConnected("connection lost"))

    async def _connection(self) -> None:
        self.url = next(self._url_turn)
        token = await self._fresh_token()
        # websockets verifies wss:// with the system's CAs unless given a context.
        secure = self._ssl is not None and self.url.startswith("wss://")
        tls: dict[str, Any] = {"ssl": self._ssl} if secure else {}
        async with connect(
            self.url,
            **tls,
            subprotocols=[Subprotocol(self._subprotocol)],
            compression=None,
            open_timeout=self._connect_timeout_s,
            max_size=None,
        ) as ws:
            offsets = self._store.get_all()
            subs = {ch: offsets.get(ch) for ch in self._wanted | offsets.keys()}
            hello = Hello(device=self.device, token=token, subs=subs, app=self.app)
            await self._send(ws, hello.to_wire())
            try:
                welcome = parse_server_message(await self._receive(ws, self._connect_timeout_s))
                if not isinstance(welcome, Welcome):
                    raise ProtocolError(f"expected welcome, got {welcome!r}")
                self._welcomed(welcome, offsets)
                self._ws = ws
                self.transport = "websocket"
                self._connected.set()
                await self._flush_acks()
                while True:
                    await self._dispatch(parse_server_message(await self._receive(ws, None)))
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code == CloseCode.FORBIDDEN:
                    raise AccessRevoked(code, reason) from exc
                if code == CloseCode.UNAUTHORIZED:
                    raise Unauthorized(code, reason) from exc
                if not should_reconnect(code):
                    raise ConnectionClosedFatal(code, reason) from exc
                raise

    async def _receive(self, ws: ClientConnection, timeout_s: float | None) -> dict[str, Any]:
        frame = await asyncio.wait_for(ws.recv(), timeout_s)
        return self._codec.decode(frame if isinstance(frame, bytes) else frame.encode())

    def _welcomed(self, welcome: Welcome, offsets: dict[str, str]) -> None:
        self.session = welcome
        self._welcomes += 1
        self._next_welcome.set()
        self._next_welcome = asyncio.Event()
        self._contacted()
        for channel, state in welcome.subs.items():
            if "error" in state:
                self._refused(channel, state["error"])
            elif not state["recovered"]:
                self._store.set(channel, state["offset"])
                self._on_recovery_failed(channel)
            elif channel not in offsets:
                self._store.set(channel, state["offset"])
            # recovered with an offset: the replayed events advance it.

    def _refused(self, channel: str, why: str) -> None:
        log.warning("fieldpush refused channel %s: %s", channel, why)
        self._wanted.discard(channel)
        self._store.forget(channel)

    async def _dispatch(self, message: ServerMessage) -> None:
        if isinstance(message, EventMsg):
            await self._hand_out(message)
        elif isinstance(message, list):
            for event in message:
                await self._hand_out(event)
        elif isinstance(message, ErrorMsg):
            future = self._replies.get(message.id) if message.id is not None else None
            if future is not None and not future.done():
                future.set_exception(RequestError(message.code, message.message))
            else:
                log.warning("fieldpush error: %s: %s", message.code, message.message)
        elif isinstance(message, Goaway):
            self._schedule_goaway(message)
        elif isinstance(message, RefreshNeeded):
            self._answer_refresh_needed()
        elif isinstance(message, Wipe):
            await self._wipe(message)
        elif isinstance(message, Unsubscribed) and message.id is None:
            self._refused(message.channel, "ended by the server after a token refresh")
        elif isinstance(message, UnknownMsg):
            log.debug("fieldpush sent a message of unknown type %r; ignored", message.type)
        else:
            future = self._replies.get(getattr(message, "id", -1))
            if future is not None and not future.done():
                future.set_result(message)

    async def _wipe(self, message: Wipe) -> None:
        """Erase what this client holds (its offsets, the ids it has seen),
        run the application's ``on_wipe`` (which erases the app's stores and
        keys), then confirm with ``wiped``; the server then closes with 4003.
        If ``on_wipe`` fails, nothing is confirmed: the server keeps the wipe
        pending and asks again after the next ``hello``."""
        for channel in self._store.get_all():
            self._store.forget(channel)
        self._seen.clear()
        if self._on_wipe is not None:
            try:
                done = self._on_wipe()
                if done is not None:
                    await done
            except Exception:
                log.exception("fieldpush on_wipe failed; the wipe is not confirmed")
                return
        else:
            log.warning("fieldpush wipe %s: no on_wipe given; erased the offsets only", message.id)
        ws = self._ws
        if ws is not None:
            await self._send(ws, Wiped(id=message.id).to_wire())

    async def _hand_out(self, event: EventMsg) -> None:
        handled = self._seen.get(event.id)
        if handled is not None:
            if handled and self.auto_ack and event.priority == "critical":
                self._ack_soon([event.id])  # sent again: our ack was lost
            return
        self._seen[event.id] = False
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        if event.priority == "critical":
            self._critical_at = asyncio.get_running_loop().time()
            self._open_critical.add(event.id)
        await self._queue.put(event)

    @property
    def http_base(self) -> str:
        """The node's HTTP API base (``http_url``, else derived from the socket's URL)."""
        return self._http_url or http_url_for(self.url)

    @property
    def tls_context(self) -> ssl_module.SSLContext | None:
        """The TLS context of the client's connections (None: the system's CAs)."""
        return self._ssl

    async def fresh_token(self) -> str:
        """A current token for an HTTP call of the SDK's own (the uploads)."""
        return await self._fresh_token()

    async def _fresh_token(self) -> str:
        """A token from the provider (or the plain one); it becomes :attr:`token`."""
        source = self._token_source
        if not isinstance(source, str):
            token = source()
            if not isinstance(token, str):
                token = await token
            self.token = token
        return self.token

    def _answer_refresh_needed(self) -> None:
        """Send ``refresh`` with a token from the provider, in a task of the
        client's (the reading loop goes on meanwhile); one at a time."""
        if isinstance(self._token_source, str):
            log.warning("fieldpush token expires soon and no token provider was given")
            return
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            token = await self._fresh_token()
            await self.call(partial(Refresh, token=token), Refreshed)
        except (
            RequestError,
            RequestTimeout,
            NotConnected,
            ProtocolError,
            ConnectionClosed,
            OSError,
        ) as exc:
            # The server closes with 4001 at exp plus its grace; events() then raises.
            log.warning("fieldpush token refresh failed: %s", exc)
        except Exception:  # the provider's: logged, the same outcome
            log.exception("fieldpush token provider failed")

    def _schedule_goaway(self, goaway: Goaway) -> None:
        """Leave this node at a random point of the server's window."""
        low, high = goaway.reconnect_after_ms
        ws = self._ws

        async def leave() -> None:
            await asyncio.sleep(random.uniform(low, max(low, high)) / 1000)
            self._reconnect_now = True
            if ws is not None:
                await ws.close()

        if self._goaway is None or self._goaway.done():
            self._goaway = asyncio.get_running_loop().create_task(leave())

    # ------------------------------------------------------- long-poll fallback

    async def _poll_for(self, duration_s: float, first: bool) -> None:
        """Receive by long polls for ``duration_s``: the socket failed
        ``fallback_after_failures`` times in a row (``first``: just now).
        Raises :class:`~fieldpush_client.errors.Unauthorized` when the server
        refuses the token.

        The HTTP client of the window is closed on every way out, and only
        once no request on it is under way: the acks sent meanwhile
        (:meth:`_flush_acks`) are waited for at the end of the window, and
        cancelled (and still waited for) when the window ends by an error or
        by cancellation. httpx does not close a connection that is still
        being opened when its client closes, so closing earlier would leave
        that socket open."""
        http_url = self._http_url or http_url_for(self.url)
        log.log(
            logging.WARNING if first else logging.INFO,
            "fieldpush socket failed %d times in a row; polling %s, trying the socket in %g s",
            self._fallback_after,
            http_url,
            duration_s,
        )
        loop = asyncio.get_running_loop()
        end = loop.time() + duration_s
        delays = self._backoff()
        token = await self._fresh_token()
        positions = self._poll_positions()
        async with DispatcherClient(
            http_url, token, timeout_s=self._poll_wait_s + 10, ssl=self._ssl
        ) as http:
            self._http = http
            self.transport = "poll"
            try:
                await self._flush_acks()
                while (left := end - loop.time()) > 0:
                    try:
                        reply = await http.poll(
                            positions, wait_s=min(self._poll_wait_s, left), device=self.device
                        )
                    except (httpx.HTTPError, PublishError) as exc:
                        if isinstance(exc, PublishError) and exc.status in (401, 403):
                            refused = exc.message.removeprefix(_NOT_READABLE)
                            if exc.status == 401 or refused not in positions:
                                raise Unauthorized(exc.status, exc.message) from exc
                            self._refused(refused, "not allowed to read it")
                            del positions[refused]
                            continue
                        log.info("fieldpush poll of %s failed: %s", http_url, exc)
                        await asyncio.sleep(min(next(delays), max(0.0, end - loop.time())))
                        continue
                    delays = self._backoff()
                    self._contacted()
                    await self._polled(reply, positions)
                    await self._flush_acks()
            except BaseException:
                for task in self._http_acks:
                    task.cancel()
                raise
            finally:
                self._http = None  # no new acks on it
                self.transport = None
                await settle(self._http_acks)

    def _poll_positions(self) -> dict[str, str | None]:
        """Channel → offset to poll from: the wanted channels and the recorded
        ones, with the user's own channel (the socket subscribes it by itself)."""
        offsets = self._store.get_all()
        channels = self._wanted | offsets.keys()
        user = self.session.user if self.session is not None else token_subject(self.token)
        if user is not None:
            channels.add(user_channel(user))
        return {channel: offsets.get(channel) for channel in sorted(channels)}

    async def _polled(self, reply: PollReply, positions: dict[str, str | None]) -> None:
        for channel, offset in reply.offsets.items():
            if not reply.recovered.get(channel, True):
                self._store.set(channel, offset)
                self._on_recovery_failed(channel)
            elif positions.get(channel) is None:  # polled "from now"
                self._store.set(channel, offset)
            positions[channel] = offset
        for event in reply.events:
            await self._hand_out(event)


def _warn_recovery_failed(channel: str) -> None:
    log.warning("fieldpush could not recover %s: resynchronise its data", channel)
