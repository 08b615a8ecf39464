"""A pipelined Redis command client on one raw asyncio connection.

Why not redis-py: measured on this project's publish path, one ``EVALSHA``
through redis-py's asyncio client cost about 300 µs of CPU (connection pool,
retry wrapper, timeouts, response parsing layers), as much as the whole
HTTP request around it; this client costs a small fraction of that
(``docs/performance.md``). Redis executes one connection's commands in order,
so one connection with pipelining is all a node needs.

Guarantees
    Commands are sent in call order; every command issued in the same
    event-loop iteration goes out in one write. A reply reaches exactly the
    caller of its command. When the connection fails or a reply does not come
    within ``timeout_s``, every command in flight fails with
    :class:`~fieldpush.errors.BackendUnavailable` (whether Redis executed it is
    unknown, so callers never report success) and the next command connects
    again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any

import hiredis

from fieldpush.backend.redis.pubsub import RedisAddress, encode_command
from fieldpush.errors import BackendUnavailable

__all__ = ["RedisClient", "Script"]

#: Error replies that mean "cannot store now" (loading after a restart, a replica, a busy
#: script, out of memory, too few replicas): callers get BackendUnavailable.
_NOT_NOW = (
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "READONLY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "OOM",
    "NOREPLICAS",
)


class Script:
    """A Lua script called by its SHA1; sent in full once when Redis lacks it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class _Connection(asyncio.Protocol):
    """One connection: commands in flight in order, and one watchdog timer
    (cheaper than a timeout per command) that fails the connection when the
    oldest command waited longer than ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.sent_at: deque[float] = deque()
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.timeout_s = timeout_s
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        sent_at = self.sent_at
        while (reply := reader.gets()) is not False:
            future = waiting.popleft()
            sent_at.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection to redis lost")
        if not self.lost.done():
            self.lost.set_result(None)

    def fail(self, reason: str) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.sent_at.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(BackendUnavailable(reason))
        if self.transport is not None:
            self.transport.abort()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise BackendUnavailable("connection to redis lost")
        loop = self.loop
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.append(future)
        self.sent_at.append(loop.time())
        self.buffer.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        if self.watchdog is None:
            self.watchdog = loop.call_later(self.timeout_s, self.check)
        return future

    def check(self) -> None:
        """Fail the connection if the oldest command is overdue; else look again later."""
        self.watchdog = None
        if not self.sent_at:
            return
        overdue = self.sent_at[0] + self.timeout_s - self.loop.time()
        if overdue <= 0:
            self.fail(f"no reply from redis within {self.timeout_s} s")
        else:
            self.watchdog = self.loop.call_later(overdue, self.check)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.buffer))
        self.buffer.clear()


class RedisClient:
    """Sends commands to one Redis server. See the module docstring."""

    def __init__(self, address: RedisAddress, *, timeout_s: float) -> None:
        self._address = address
        self._db = address.db
        self._timeout_s = timeout_s
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        #: Commands failed as ``BackendUnavailable``; connections after the first
        #: that answered a command (the metrics: a link that is accepted and
        #: dropped at once, as by a proxy or load balancer in front of a Redis
        #: that is down, is not a reconnect).
        self.errors = 0
        self.reconnects = 0
        self._connections_made = 0
        self._unconfirmed: _Connection | None = None

    @property
    def linked(self) -> bool:
        """Whether the command connection is open now (or not needed yet)."""
        connection = self._connection
        return self._connections_made == 0 or (connection is not None and not connection.closed)

    async def close(self) -> None:
        """Fail the commands in flight and close the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.fail("client closed")
            if connection.transport is not None:
                await asyncio.shield(connection.lost)

    async def _connected(self) -> _Connection:
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            connection = self._connection
            if connection is None or connection.closed:
                connection = self._connection = await self._connect()
                if self._connections_made:
                    self._unconfirmed = connection
                self._connections_made += 1
        return connection

    def _confirm(self) -> None:
        """A new connection answered its first command: the link is back."""
        self._unconfirmed = None
        self.reconnects += 1

    async def _connect(self) -> _Connection:
        address = self._address
        connection = _Connection(self._timeout_s)
        try:
            await address.open(connection, self._timeout_s)
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise BackendUnavailable(
                f"cannot connect to redis at {address.safe}: {reason}"
            ) from None
        setup = []
        credentials = address.credentials()
        if credentials is not None:
            setup.append(connection.send(encode_command(b"AUTH", *credentials)))
        if self._db:
            setup.append(connection.send(encode_command(b"SELECT", str(self._db).encode())))
        for reply in await asyncio.gather(*setup):
            if isinstance(reply, hiredis.ReplyError):
                connection.fail(str(reply))
                raise BackendUnavailable(
                    f"redis at {address.safe} refused the connection setup: {reply}"
                )
        return connection

    async def execute(self, *args: Any) -> Any:
        """Run one command; its reply (a ``hiredis.ReplyError`` is returned, not raised,
        except the ones that mean Redis cannot serve now: BackendUnavailable)."""
        try:
            return await self._execute(args)
        except BackendUnavailable:
            self.errors += 1
            raise

    async def _execute(self, args: tuple[Any, ...]) -> Any:
        connection = await self._connected()
        reply = await connection.send(encode_command(*map(_bytes, args)))
        if connection is self._unconfirmed:
            self._confirm()
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(_NOT_NOW):
            raise BackendUnavailable(f"redis at {self._address.safe}: {reply}")
        return reply

    async def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one write, in order; their replies (as :meth:`execute`).
        Cheaper than gathering :meth:`execute` calls: no task per command."""
        try:
            return await self._pipeline(commands)
        except BackendUnavailable:
            self.errors += 1
            raise

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        connection = await self._connected()
        futures = [connection.send(encode_command(*map(_bytes, command))) for command in commands]
        replies = await asyncio.gather(*futures)  # marks the others' failures retrieved
        if connection is self._unconfirmed:
            self._confirm()
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(_NOT_NOW):
                raise BackendUnavailable(f"redis at {self._address.safe}: {reply}")
        return list(replies)

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by SHA1, sending its source when Redis does not have it."""
        tail = [len(keys), *keys, *args]
        reply = await self.execute(b"EVALSHA", script.sha, *tail)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.execute(b"EVAL", script.source, *tail)
        if isinstance(reply, hiredis.ReplyError):
            raise RuntimeError(f"redis script failed: {reply}")
        return reply
