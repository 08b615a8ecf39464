"""Raw TCP connections to a node under test, for requests no client library
would send (half heads, pieces, floods)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from tests.support.node import RunningNode

#: Every HTTP route that reads a body, with a role that may call it.
BODY_ROUTES = [
    ("POST", "/v1/publish", "dispatcher"),
    ("POST", "/v1/poll", "sales"),
    ("POST", "/v1/ack", "sales"),
    ("POST", "/v1/sync/push", "sales"),
    ("POST", "/v1/sync/pull", "sales"),
    ("PUT", "/v1/records/customer/c1", "service"),
    ("POST", "/v1/admin/tokens/revoke", "admin"),
]


def address(node: RunningNode) -> tuple[str, int]:
    """The node's host and port."""
    host, _, port = node.url.removeprefix("http://").rpartition(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def raw(
    node: RunningNode, receive_buffer: int | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A TCP connection to ``node`` (with a small receive buffer, to play a
    client that reads slowly), closed afterwards."""
    sock = socket.create_connection(address(node))
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
