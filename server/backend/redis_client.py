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
    :class:`~server.errors.BackendUnavailable` (whether Redis executed it is
    unknown, so callers never report success) and the next command connects
    again.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any

import hiredis

from server.backend.redis_pubsub import RedisAddress, encode_command
from server.errors import BackendUnavailable

__all__ = ["RedisClient", "Script"]

#: Error replies that mean "not now" (loading after a restart, a replica, a busy script).
_NOT_NOW = ("LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")


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
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while (reply := reader.gets()) is not False:
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection to redis lost")

    def fail(self, reason: str) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(BackendUnavailable(reason))
        if self.transport is not None:
            self.transport.abort()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.waiting.append(future)
        self.buffer.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return future

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

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.fail("client closed")
            self._connection = None

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
        return connection

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        address = self._address
        connection = _Connection()
        try:
            if address.path:
                connect = loop.create_unix_connection(lambda: connection, address.path)
            else:
                context = ssl.create_default_context() if address.tls else None
                connect = loop.create_connection(
                    lambda: connection, address.host, address.port, ssl=context
                )
            await asyncio.wait_for(connect, self._timeout_s)
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"cannot connect to redis at {address.safe}: {exc}") from None
        setup = []
        if address.password is not None:
            credentials = [address.password.encode()]
            if address.username:
                credentials.insert(0, address.username.encode())
            setup.append(connection.send(encode_command(b"AUTH", *credentials)))
        if self._db:
            setup.append(connection.send(encode_command(b"SELECT", str(self._db).encode())))
        for reply in await self._wait(connection, setup):
            if isinstance(reply, hiredis.ReplyError):
                connection.fail(str(reply))
                raise BackendUnavailable(
                    f"redis at {address.safe} refused the connection setup: {reply}"
                )
        return connection

    async def _wait(self, connection: _Connection, futures: list[asyncio.Future[Any]]) -> list[Any]:
        if not futures:
            return []
        try:
            return await asyncio.wait_for(asyncio.gather(*futures), self._timeout_s)
        except TimeoutError:
            connection.fail(
                f"no reply from redis at {self._address.safe} within {self._timeout_s} s"
            )
            raise BackendUnavailable(f"no reply from redis at {self._address.safe}") from None

    async def execute(self, *args: Any) -> Any:
        """Run one command; its reply (a ``hiredis.ReplyError`` is returned, not raised,
        except the ones that mean Redis cannot serve now: BackendUnavailable)."""
        connection = await self._connected()
        future = connection.send(encode_command(*map(_bytes, args)))
        try:
            reply = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            connection.fail(
                f"no reply from redis at {self._address.safe} within {self._timeout_s} s"
            )
            raise BackendUnavailable(f"no reply from redis at {self._address.safe}") from None
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(_NOT_NOW):
            raise BackendUnavailable(f"redis at {self._address.safe}: {reply}")
        return reply

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by SHA1, sending its source when Redis does not have it."""
        tail = [len(keys), *keys, *args]
        reply = await self.execute(b"EVALSHA", script.sha, *tail)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.execute(b"EVAL", script.source, *tail)
        if isinstance(reply, hiredis.ReplyError):
            raise RuntimeError(f"redis script failed: {reply}")
        return reply
