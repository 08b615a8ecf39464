"""A small Redis pub/sub client on a raw asyncio connection.

It is the receiving end of the hot path: every event a node delivers arrives
here. Replies are parsed by ``hiredis`` inside ``data_received`` and each
``message`` is handed to a callback synchronously: no task, no ``await`` per
message.

Guarantees
    :meth:`PubSub.subscribe` returns once Redis confirmed the subscription, so
    everything published afterwards reaches the callback. Subscriptions and
    unsubscriptions requested in the same event-loop iteration go out as one
    command each, in the order they were asked for. Pub/sub itself is at most
    once: when the connection drops, the client reconnects with exponential
    backoff and full jitter, subscribes again to every channel it had, and
    then calls ``on_reconnected`` so that the owner can read what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from server.errors import BackendUnavailable, ConfigError

__all__ = ["PubSub", "RedisAddress", "encode_command"]

log = logging.getLogger("fieldpush.backend")


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect, parsed from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

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
        db_text = parts.path.strip("/") if parts.scheme != "unix" else ""
        if db_text and not db_text.isdigit():
            raise ConfigError(f"redis_url: the database must be a number, not {db_text!r}")
        if parts.scheme == "unix":
            return cls(path=parts.path, username=username, password=password)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            username=username,
            password=password,
            tls=parts.scheme == "rediss",
            db=int(db_text or 0),
        )

    @property
    def safe(self) -> str:
        """The address for logs: never the password."""
        return self.path or f"{self.host}:{self.port}"


def encode_command(*parts: bytes) -> bytes:
    """One command in RESP."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: PubSub) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        on_reply = self.owner.on_reply
        while (reply := reader.gets()) is not False:
            on_reply(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class PubSub:
    """Subscribes to Redis channels and passes their messages to ``on_message``."""

    def __init__(
        self,
        address: RedisAddress,
        *,
        on_message: Callable[[bytes, bytes], None],
        on_reconnected: Callable[[], None],
        timeout_s: float,
    ) -> None:
        self._address = address
        self._on_message = on_message
        self._on_reconnected = on_reconnected
        self._timeout_s = timeout_s
        self._wanted: set[bytes] = set()
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._requested_at: dict[bytes, float] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: list[tuple[bytes, bytes]] = []
        self._flush_scheduled = False
        self._protocol: _Protocol | None = None
        self._auth_replies = 0
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect (waiting up to the timeout for the first connection) and keep connected."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self._connected.wait(), self._timeout_s)
        except TimeoutError:
            log.warning(
                "redis at %s is not reachable yet; retrying in the background", self._address.safe
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for future in self._confirmations.values():
            future.cancel()
        self._confirmations.clear()

    # -------------------------------------------------------------- commands

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe; returns when Redis confirmed. Raises ``BackendUnavailable``
        when no confirmation comes within the timeout."""
        self._wanted.add(channel)
        future = self._confirmations.get(channel)
        if future is None:
            future = self._confirmations[channel] = self._loop.create_future()
            self._requested_at[channel] = self._loop.time()
            self._enqueue(b"SUBSCRIBE", channel)
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._timeout_s, self._check_confirmations)
        await asyncio.shield(future)

    def _check_confirmations(self) -> None:
        """Fail the subscriptions Redis has not confirmed within the timeout:
        their callers get BackendUnavailable (one timer for all of them, cheaper
        than a timeout each). The channels stay wanted: a reconnect subscribes
        them again."""
        self._watchdog = None
        horizon = self._loop.time() - self._timeout_s
        for channel, requested in list(self._requested_at.items()):
            if requested <= horizon:
                del self._requested_at[channel]
                future = self._confirmations.pop(channel, None)
                if future is not None and not future.done():
                    future.set_exception(
                        BackendUnavailable(
                            f"no confirmation of SUBSCRIBE from {self._address.safe}"
                        )
                    )
        if self._requested_at:
            self._watchdog = self._loop.call_later(self._timeout_s / 2, self._check_confirmations)

    async def unsubscribe(self, channel: bytes) -> None:
        """Unsubscribe (without waiting for the confirmation)."""
        self._wanted.discard(channel)
        self._enqueue(b"UNSUBSCRIBE", channel)

    def _enqueue(self, command: bytes, channel: bytes) -> None:
        self._queue.append((command, channel))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued (un)subscriptions, consecutive equal commands as one."""
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return  # the reconnect subscribes to everything in self._wanted
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

    # --------------------------------------------------------------- replies

    def on_reply(self, reply: Any) -> None:
        if type(reply) is list:
            kind = reply[0]
            if kind == b"message":
                self._on_message(reply[1], reply[2])
            elif kind == b"subscribe":
                self._requested_at.pop(reply[1], None)
                future = self._confirmations.pop(reply[1], None)
                if future is not None and not future.done():
                    future.set_result(None)
            return
        if self._auth_replies:
            self._auth_replies -= 1
            if isinstance(reply, hiredis.ReplyError):
                log.error("redis at %s refused the credentials: %s", self._address.safe, reply)
                if self._protocol is not None and self._protocol.transport is not None:
                    self._protocol.transport.close()
            return
        if isinstance(reply, hiredis.ReplyError):
            log.warning("redis pub/sub error from %s: %s", self._address.safe, reply)

    # ------------------------------------------------------------ connection

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        address = self._address
        protocol = _Protocol(self)
        if address.path:
            await asyncio.wait_for(
                loop.create_unix_connection(lambda: protocol, address.path), self._timeout_s
            )
        else:
            context = ssl.create_default_context() if address.tls else None
            await asyncio.wait_for(
                loop.create_connection(lambda: protocol, address.host, address.port, ssl=context),
                self._timeout_s,
            )
        assert protocol.transport is not None
        if address.password is not None:
            credentials = [address.password.encode()]
            if address.username:
                credentials.insert(0, address.username.encode())
            self._auth_replies = 1
            protocol.transport.write(encode_command(b"AUTH", *credentials))
        return protocol

    async def _run(self) -> None:
        attempt = 0
        down_since: float | None = None
        first = True
        while True:
            try:
                protocol = await self._connect()
            except (OSError, TimeoutError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                delay = random.uniform(0, min(2.0, 0.05 * 2**attempt))
                attempt += 1
                log.debug("redis pub/sub connect failed (%s); retry in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._protocol = protocol
            channels = sorted(self._wanted)
            loop = asyncio.get_running_loop()
            pending = []
            for channel in channels:
                future = self._confirmations.get(channel)
                if future is None:
                    future = self._confirmations[channel] = loop.create_future()
                pending.append(future)
            assert protocol.transport is not None
            for start in range(0, len(channels), 1000):
                protocol.transport.write(
                    encode_command(b"SUBSCRIBE", *channels[start : start + 1000])
                )
            self._queue.clear()
            try:
                # Catch-up reads history, so it must start only once every
                # channel is live again: nothing published later can be missed.
                await asyncio.wait_for(
                    asyncio.gather(*map(asyncio.shield, pending)), self._timeout_s
                )
            except TimeoutError:
                log.warning(
                    "redis at %s did not confirm the subscriptions; reconnecting",
                    self._address.safe,
                )
                protocol.transport.close()
                await protocol.lost
                continue
            self._connected.set()
            if not first:
                downtime = time.monotonic() - down_since if down_since is not None else 0.0
                log.warning(
                    "redis pub/sub at %s is back after %.1f s; catching up %d channel(s)",
                    self._address.safe,
                    downtime,
                    len(channels),
                )
                self._on_reconnected()
            first = False
            attempt = 0
            down_since = None
            await protocol.lost
            self._connected.clear()
            self._protocol = None
            down_since = time.monotonic()
            log.warning("redis pub/sub connection to %s lost; reconnecting", self._address.safe)
