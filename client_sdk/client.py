"""``PushClient``: a phone's connection to fieldpush, kept alive for it.

    async with PushClient(url, token=token, device="pixel-7", subscriptions=["team:a"]) as client:
        async for event in client.events():
            handle(event)

Guarantees to the application
    **At least once, ordered per channel, de-duplicated.** Events are handed
    out in the order the server sent them. An event's offset is recorded in
    the :class:`~client_sdk.store.OffsetStore` only when the application asks
    for the next event, i.e. after its loop body for that event returned; the
    client resumes from the recorded offsets after every reconnect, so an event
    whose handling was interrupted comes again. Events already handed out are
    skipped by id (the last ``dedupe_window`` ids).

    **Reconnects by itself** (to the next of its URLs, when it has several)
    after network errors and after close codes that
    :func:`~client_sdk.protocol.should_reconnect` allows, waiting
    :func:`~client_sdk.backoff.backoff_delays` between attempts (a ``goaway``
    instead makes it reconnect at a random point of the server's window). Close
    codes that retrying cannot fix (4001, 4003, 1007, 1009) end ``events()``
    with :class:`~client_sdk.errors.Unauthorized` or
    :class:`~client_sdk.errors.ConnectionClosedFatal`.

    **Backpressure.** At most ``queue_size`` events wait for the application;
    beyond that the client stops reading the socket, and a server that finds
    the phone too slow closes it (4008); the client then resumes without loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from client_sdk.backoff import backoff_delays
from client_sdk.errors import (
    ConnectionClosedFatal,
    NotConnected,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from client_sdk.protocol import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    CloseCode,
    DecodeError,
    ErrorMsg,
    EventMsg,
    Goaway,
    Pong,
    ProtocolError,
    Subscribed,
    Unsubscribed,
    Welcome,
    codec_for,
    parse_server_message,
    should_reconnect,
)
from client_sdk.store import MemoryOffsetStore, OffsetStore

__all__ = ["PushClient"]

log = logging.getLogger("fieldpush.client")

_CODECS = {"json": SUBPROTOCOL_JSON, "msgpack": SUBPROTOCOL_MSGPACK}


class PushClient:
    """A connection to a fieldpush node that survives disconnects. See the module docstring."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str,
        device: str,
        codec: str = "json",
        store: OffsetStore | None = None,
        subscriptions: Iterable[str] = (),
        backoff: Callable[[], Iterator[float]] = backoff_delays,
        dedupe_window: int = 10_000,
        queue_size: int = 1000,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        on_recovery_failed: Callable[[str], None] | None = None,
    ) -> None:
        if codec not in _CODECS:
            raise ValueError(f"codec must be 'json' or 'msgpack', not {codec!r}")
        #: Node URLs, tried in turn (one URL: a load balancer's, usually).
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("need at least one URL")
        self._url_turn = itertools.cycle(self.urls)
        self.url = self.urls[0]
        self.token = token
        self.device = device
        self._subprotocol = _CODECS[codec]
        self._codec = codec_for(self._subprotocol)
        self._store = store if store is not None else MemoryOffsetStore()
        self._wanted: set[str] = set(subscriptions)
        self._backoff = backoff
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._queue: asyncio.Queue[EventMsg | BaseException] = asyncio.Queue(queue_size)
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._on_recovery_failed = on_recovery_failed or _warn_recovery_failed
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._goaway: asyncio.Task[None] | None = None
        self._reconnect_now = False
        self._pending_acks: list[str] = []
        #: The server's ``welcome`` of the current (or last) connection.
        self.session: Welcome | None = None

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> PushClient:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (``async with`` does it for you)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        for task in (self._goaway, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._goaway = None
        if self._ws is not None:
            await self._ws.close()

    @property
    def connected(self) -> bool:
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

    # ------------------------------------------------------------ application

    async def events(self) -> AsyncIterator[EventMsg]:
        """Events in order, each at most once per client (see the module docstring)."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            self._store.set(item.channel, item.offset)

    async def subscribe(self, channel: str, since: str | None = None) -> Subscribed:
        """Subscribe (and stay subscribed across reconnects). ``since`` defaults
        to the recorded offset of the channel, if any."""
        self._wanted.add(channel)
        if since is None:
            since = self._store.get_all().get(channel)
        message: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            message["since"] = since
        reply = await self._request(message)
        assert isinstance(reply, Subscribed)
        if since is None or not reply.recovered:
            self._store.set(channel, reply.offset)  # where to resume from
        if not reply.recovered:
            self._on_recovery_failed(channel)
        return reply

    async def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._store.forget(channel)
        reply = await self._request({"type": "unsubscribe", "channel": channel})
        assert isinstance(reply, Unsubscribed)

    async def ack(self, *events: EventMsg | str) -> None:
        """Acknowledge events (by event or id). Sent at once when connected,
        otherwise as soon as the client is connected again."""
        self._pending_acks.extend(e if isinstance(e, str) else e.id for e in events)
        if self._ws is not None and self.connected:
            await self._flush_acks(self._ws)

    async def ping(self) -> float:
        """Round trip of a protocol ``ping``, in seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await self._request({"type": "ping"})
        assert isinstance(reply, Pong)
        return loop.time() - started

    async def _request(self, message: dict[str, Any]) -> Any:
        ws = self._ws
        if ws is None or not self.connected:
            try:
                await asyncio.wait_for(self._connected.wait(), self._request_timeout_s)
            except TimeoutError:
                raise NotConnected(f"not connected to {self.url}") from None
            ws = self._ws
            assert ws is not None
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            await self._send(ws, {**message, "id": request_id})
            return await asyncio.wait_for(future, self._request_timeout_s)
        except TimeoutError:
            raise RequestTimeout(f"no answer to {message['type']}") from None
        finally:
            self._replies.pop(request_id, None)

    # ------------------------------------------------------------- connection

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        data = self._codec.encode(message)
        await ws.send(data if self._codec.binary else data.decode())

    async def _flush_acks(self, ws: ClientConnection) -> None:
        if self._pending_acks:
            ids, self._pending_acks = self._pending_acks, []
            await self._send(ws, {"type": "ack", "ids": ids})

    async def _run(self) -> None:
        delays = self._backoff()
        while True:
            try:
                await self._connection()
                delays = self._backoff()  # it worked: start the backoff over
            except ConnectionClosedFatal as exc:
                await self._queue.put(exc)
                return
            except (
                OSError,
                TimeoutError,
                ConnectionClosed,
                InvalidHandshake,
                ProtocolError,
                DecodeError,
            ) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403):
                    await self._queue.put(Unauthorized(exc.response.status_code, "refused"))
                    return
                log.info("fieldpush connection to %s failed: %s", self.url, exc)
            except Exception as exc:  # a bug: hand it to the application instead of dying unseen
                await self._queue.put(exc)
                return
            finally:
                self._disconnected()
            if self._reconnect_now:
                self._reconnect_now = False
                continue
            await asyncio.sleep(next(delays))

    def _disconnected(self) -> None:
        self._connected.clear()
        self._ws = None
        for future in self._replies.values():
            if not future.done():
                future.set_exception(NotConnected("connection lost"))

    async def _connection(self) -> None:
        self.url = next(self._url_turn)
        async with connect(
            self.url,
            subprotocols=[Subprotocol(self._subprotocol)],
            compression=None,
            open_timeout=self._connect_timeout_s,
            max_size=None,
        ) as ws:
            offsets = self._store.get_all()
            subs = {ch: offsets.get(ch) for ch in self._wanted | offsets.keys()}
            await self._send(
                ws, {"type": "hello", "token": self.token, "device": self.device, "subs": subs}
            )
            try:
                welcome = parse_server_message(await self._receive(ws, self._connect_timeout_s))
                if not isinstance(welcome, Welcome):
                    raise ProtocolError(f"expected welcome, got {welcome!r}")
                self._welcomed(welcome, offsets)
                self._ws = ws
                self._connected.set()
                await self._flush_acks(ws)
                while True:
                    await self._dispatch(parse_server_message(await self._receive(ws, None)))
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code in (CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN):
                    raise Unauthorized(code, reason) from exc
                if not should_reconnect(code):
                    raise ConnectionClosedFatal(code, reason) from exc
                raise

    async def _receive(self, ws: ClientConnection, timeout_s: float | None) -> dict[str, Any]:
        frame = await asyncio.wait_for(ws.recv(), timeout_s)
        return self._codec.decode(frame if isinstance(frame, bytes) else frame.encode())

    def _welcomed(self, welcome: Welcome, offsets: dict[str, str]) -> None:
        self.session = welcome
        for channel, state in welcome.subs.items():
            if "error" in state:
                log.warning("fieldpush refused channel %s: %s", channel, state["error"])
                self._wanted.discard(channel)
                self._store.forget(channel)
            elif not state["recovered"]:
                self._store.set(channel, state["offset"])
                self._on_recovery_failed(channel)
            elif channel not in offsets:
                self._store.set(channel, state["offset"])
            # recovered with an offset: the replayed events advance it.

    async def _dispatch(self, message: Any) -> None:
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
        else:
            future = self._replies.get(getattr(message, "id", -1))
            if future is not None and not future.done():
                future.set_result(message)

    async def _hand_out(self, event: EventMsg) -> None:
        if event.id in self._seen:
            return
        self._seen[event.id] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        await self._queue.put(event)

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


def _warn_recovery_failed(channel: str) -> None:
    log.warning("fieldpush could not recover %s: resynchronise its data", channel)
