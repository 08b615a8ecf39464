"""A small Redis pub/sub client on a raw asyncio connection.

It is the receiving end of the hot path: every event a node delivers arrives
here. Replies are parsed by ``hiredis`` inside ``data_received`` and each
``message`` is handed to a callback synchronously: no task, no ``await`` per
message.

Guarantees
    :meth:`PubSub.subscribe` returns once Redis confirmed the subscription, so
    everything published afterwards reaches the callback, in the order Redis
    sent it; it raises :class:`~fieldpush.errors.BackendUnavailable` when no
    confirmation came within ``timeout_s``. Subscriptions and unsubscriptions
    requested in the same event-loop iteration go out in one write, consecutive
    ones of the same kind as one command, in the order they were asked for.
    Pub/sub itself is at most once: when the connection drops, the client
    reconnects with exponential backoff and full jitter (capped at
    :data:`BACKOFF_CAP_S`), subscribes again to every channel it had, and only
    once Redis confirmed all of them calls ``on_reconnected``, so that the
    owner's catch-up read cannot miss what is published during it.

An exception raised by ``on_message`` drops the connection (asyncio closes a
transport whose protocol fails): the client reconnects and reports
``on_reconnected``, so the owner catches up instead of silently losing events.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from fieldpush.errors import BackendUnavailable, ConfigError

__all__ = ["BACKOFF_CAP_S", "PubSub", "RedisAddress", "encode_command"]

log = logging.getLogger("fieldpush.backend")

#: Reconnect delays: uniform in [0, min(cap, base * 2**attempt)] ("full jitter").
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
#: Channels per SUBSCRIBE command when re-subscribing everything.
_RESUBSCRIBE_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect, parsed from a ``redis://``, ``rediss://`` or
    ``unix://`` URL (``redis://[[user]:password@]host[:port][/db]``)."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"redis_url must start with redis://, rediss:// or unix://, not {parts.scheme}://"
            )
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            return cls(path=parts.path, username=username, password=password)
        db_text = parts.path.strip("/")
        if db_text and not db_text.isdigit():
            raise ConfigError(f"redis_url: the database must be a number, not {db_text!r}")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ConfigError("redis_url: the port must be a number from 0 to 65535") from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            username=username,
            password=password,
            tls=parts.scheme == "rediss",
            db=int(db_text or 0),
        )

    @property
    def safe(self) -> str:
        """The address for logs and error messages: never the credentials."""
        return self.path or f"{self.host}:{self.port}"

    def credentials(self) -> list[bytes] | None:
        """The arguments of ``AUTH``, or None when no password is set."""
        if self.password is None:
            return None
        if self.username:
            return [self.username.encode(), self.password.encode()]
        return [self.password.encode()]

    async def open(self, protocol: asyncio.Protocol, timeout_s: float) -> None:
        """Connect ``protocol`` to this address. Raises OSError or TimeoutError."""
        loop = asyncio.get_running_loop()
        if self.path:
            connect = loop.create_unix_connection(lambda: protocol, self.path)
        else:
            context = ssl.create_default_context() if self.tls else None
            connect = loop.create_connection(lambda: protocol, self.host, self.port, ssl=context)
        await asyncio.wait_for(connect, timeout_s)


class _Refused(BackendUnavailable):
    """Redis answered the handshake with an error (wrong credentials, say)."""


def encode_command(*parts: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """One pub/sub connection: messages go straight to ``on_message``; other
    pushes (confirmations) to the owner; plain replies (the handshake's) to
    the oldest waiting future."""

    def __init__(self, owner: PubSub, on_message: Callable[[bytes, bytes], None]) -> None:
        self.owner = owner
        self.on_message = on_message
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.replies: deque[asyncio.Future[Any]] = deque()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        on_message = self.on_message
        while (reply := reader.gets()) is not False:
            if type(reply) is list:
                kind = reply[0]
                if kind == b"message":
                    on_message(reply[1], reply[2])
                elif kind == b"pmessage":  # [pmessage, pattern, channel, payload]
                    on_message(reply[2], reply[3])
                else:
                    self.owner.on_push(reply)
            elif self.replies:
                future = self.replies.popleft()
                if not future.done():
                    future.set_result(reply)
            elif isinstance(reply, hiredis.ReplyError):
                log.warning("redis pub/sub error from %s: %s", self.owner.address.safe, reply)

    def connection_lost(self, exc: Exception | None) -> None:
        while self.replies:
            future = self.replies.popleft()
            if not future.done():
                future.set_exception(BackendUnavailable("pub/sub connection lost"))
        if not self.lost.done():
            self.lost.set_result(None)

    def command(self, *parts: bytes) -> asyncio.Future[Any]:
        """Send a command that gets a plain reply (only before any SUBSCRIBE)."""
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.replies.append(future)
        self.transport.write(encode_command(*parts))
        return future

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            await asyncio.shield(self.lost)


class PubSub:
    """Subscribes to Redis channels and passes their messages to
    ``on_message(channel, payload)``. See the module docstring."""

    def __init__(
        self,
        address: RedisAddress,
        *,
        on_message: Callable[[bytes, bytes], None],
        on_reconnected: Callable[[], None],
        timeout_s: float,
        patterns: Collection[bytes] = (),
        channels: Collection[bytes] = (),
    ) -> None:
        """``patterns``: subscribed on every connection before it counts as up
        (:attr:`connected`); their messages reach ``on_message`` with the name
        of the channel that matched. ``channels``: wanted from the start, as
        if :meth:`subscribe` had been called (without waiting for Redis)."""
        self.address = address
        self._on_message = on_message
        self._on_reconnected = on_reconnected
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        #: Channels this client should be subscribed to (re-subscribed on reconnect).
        self._wanted: set[bytes] = set(channels)
        #: Patterns subscribed with every connection (PSUBSCRIBE), before ``connected``.
        self._patterns = frozenset(patterns)
        #: subscribe() calls waiting for Redis's confirmation: channel -> (future, asked at).
        self._waiting: dict[bytes, tuple[asyncio.Future[None], float]] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        #: Channels a reconnect re-subscribed that Redis has not confirmed yet.
        self._resubscribing: set[bytes] = set()
        self._resubscribed: asyncio.Future[None] | None = None
        self._queue: list[tuple[bytes, bytes]] = []
        self._flush_scheduled = False
        #: The connection commands go to; None while there is none.
        self._protocol: _Protocol | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the live feed is up: connected, and every channel subscribed."""
        return self._up.is_set()

    async def start(self) -> None:
        """Connect (waiting up to the timeout for the first connection) and stay
        connected until :meth:`close`."""
        self._task = self._loop.create_task(self._run(), name="fieldpush-redis-pubsub")
        try:
            await asyncio.wait_for(self._up.wait(), self._timeout_s)
        except TimeoutError:
            log.warning(
                "redis pub/sub at %s is not reachable yet; retrying in the background",
                self.address.safe,
            )

    async def close(self) -> None:
        """Stop reconnecting, close the connection and fail pending subscriptions."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._protocol is not None:
            protocol, self._protocol = self._protocol, None
            await protocol.close()
        self._up.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(BackendUnavailable("pub/sub client closed"))
        self._waiting.clear()

    # -------------------------------------------------------------- commands

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe; returns when Redis confirmed. Raises ``BackendUnavailable``
        when no confirmation comes within the timeout (the channel stays wanted
        until :meth:`unsubscribe`, and a reconnect subscribes it again)."""
        if self._closed:
            raise BackendUnavailable("pub/sub client closed")
        self._wanted.add(channel)
        waiting = self._waiting.get(channel)
        if waiting is None:
            future: asyncio.Future[None] = self._loop.create_future()
            self._waiting[channel] = (future, self._loop.time())
            self._enqueue(b"SUBSCRIBE", channel)
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._timeout_s, self._check_waiting)
        else:
            future = waiting[0]
        await asyncio.shield(future)

    async def unsubscribe(self, channel: bytes) -> None:
        """Unsubscribe (without waiting for the confirmation: messages that
        Redis sent before it may still arrive)."""
        self._wanted.discard(channel)
        self._enqueue(b"UNSUBSCRIBE", channel)

    def _enqueue(self, command: bytes, channel: bytes) -> None:
        self._queue.append((command, channel))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued (un)subscriptions, consecutive equal commands as one.
        Without a connection they are dropped: the reconnect subscribes to
        every wanted channel."""
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        protocol = self._protocol
        if protocol is None or protocol.transport is None or not queue:
            return
        out = []
        index = 0
        while index < len(queue):
            command = queue[index][0]
            group = []
            while index < len(queue) and queue[index][0] == command:
                group.append(queue[index][1])
                index += 1
            out.append(encode_command(command, *group))
        protocol.transport.write(b"".join(out))

    def _check_waiting(self) -> None:
        """Fail the subscribe() calls Redis has not confirmed within the timeout
        (one timer for all of them, cheaper than a timeout each)."""
        self._watchdog = None
        horizon = self._loop.time() - self._timeout_s
        for channel, (future, asked_at) in list(self._waiting.items()):
            if asked_at <= horizon:
                del self._waiting[channel]
                if not future.done():
                    future.set_exception(
                        BackendUnavailable(
                            f"redis at {self.address.safe} did not confirm SUBSCRIBE"
                        )
                    )
        if self._waiting:
            self._watchdog = self._loop.call_later(self._timeout_s / 2, self._check_waiting)

    def on_push(self, reply: list[Any]) -> None:
        """A push other than a message: confirmations."""
        if reply[0] != b"subscribe" and reply[0] != b"psubscribe":
            return
        channel = reply[1]
        waiting = self._waiting.pop(channel, None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(None)
        if self._resubscribing:
            self._resubscribing.discard(channel)
            done = self._resubscribed
            if not self._resubscribing and done is not None and not done.done():
                done.set_result(None)

    # ------------------------------------------------------------ connection

    async def _connect(self) -> _Protocol:
        """A connection that answered PING (after AUTH when a password is set)."""
        protocol = _Protocol(self, self._on_message)
        await self.address.open(protocol, self._timeout_s)
        try:
            handshake = []
            credentials = self.address.credentials()
            if credentials is not None:
                handshake.append(protocol.command(b"AUTH", *credentials))
            handshake.append(protocol.command(b"PING"))
            async with asyncio.timeout(self._timeout_s):
                replies = await asyncio.gather(*handshake)
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    raise _Refused(f"redis at {self.address.safe} refused: {reply}")
        except BaseException:
            await protocol.close()
            raise
        return protocol

    async def _resubscribe(self, protocol: _Protocol) -> int:
        """Subscribe the new connection to every wanted channel; return how many
        once Redis confirmed them all. Raises TimeoutError when it did not in
        time, BackendUnavailable when the connection was lost."""
        assert protocol.transport is not None
        channels, patterns = list(self._wanted), list(self._patterns)
        if not channels and not patterns:
            return 0
        self._resubscribing = {*channels, *patterns}
        self._resubscribed = self._loop.create_future()
        try:
            protocol.transport.write(
                b"".join(
                    [
                        *(
                            encode_command(
                                b"SUBSCRIBE", *channels[start : start + _RESUBSCRIBE_CHUNK]
                            )
                            for start in range(0, len(channels), _RESUBSCRIBE_CHUNK)
                        ),
                        *([encode_command(b"PSUBSCRIBE", *patterns)] if patterns else []),
                    ]
                )
            )
            async with asyncio.timeout(self._timeout_s):
                await asyncio.wait(
                    [self._resubscribed, protocol.lost], return_when=asyncio.FIRST_COMPLETED
                )
            if not self._resubscribed.done():
                raise BackendUnavailable("pub/sub connection lost while subscribing")
        finally:
            self._resubscribing = set()
            self._resubscribed = None
        return len(channels)

    async def _run(self) -> None:
        """Own the connection: connect, re-subscribe, report, wait for the loss, repeat."""
        attempt = 0
        down_since = time.monotonic()
        ever_up = False
        refusal_logged = False  # a refusal is a misconfiguration: say so once per outage
        while True:
            protocol: _Protocol | None = None
            try:
                protocol = await self._connect()
                self._protocol = protocol  # subscribe() calls from now on go out directly
                channels = await self._resubscribe(protocol)
            except (OSError, TimeoutError, BackendUnavailable) as exc:
                self._protocol = None
                if protocol is not None:
                    await protocol.close()
                delay = random.uniform(
                    0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt, 16))
                )
                attempt += 1
                loud = isinstance(exc, _Refused) and not refusal_logged
                refusal_logged = refusal_logged or loud
                log.log(
                    logging.WARNING if loud else logging.DEBUG,
                    "redis pub/sub at %s: %s; retrying in %.2f s",
                    self.address.safe,
                    str(exc) or type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            self._up.set()
            if ever_up:
                log.warning(
                    "redis pub/sub at %s is back after %.1f s; %d channel(s) subscribed again",
                    self.address.safe,
                    time.monotonic() - down_since,
                    channels,
                )
                try:
                    self._on_reconnected()
                except Exception:
                    log.exception("on_reconnected failed")
            elif attempt:
                log.warning(
                    "redis pub/sub at %s is reachable after %.1f s",
                    self.address.safe,
                    time.monotonic() - down_since,
                )
            ever_up = True
            attempt = 0
            refusal_logged = False
            await asyncio.shield(protocol.lost)
            self._up.clear()
            self._protocol = None
            down_since = time.monotonic()
            log.warning("redis pub/sub connection to %s lost; reconnecting", self.address.safe)
