"""The listener and the outbox against raw-socket abuse (issue 11, defects 4
and 5): unread pongs count against the outbox bound (4008); a request head
has a timeout (408), a size and a count limit (431). Raw sockets, real node."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import phone, pong_next
from tests.support.raw import raw
from tests.support.timing import eventually, scaled


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    settings = node_settings(
        header_timeout_s=0.5, max_header_bytes=8192, max_header_count=50, max_outbox_bytes=65536
    )
    async with running_node(settings) as running:
        yield running


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), scaled(5))


async def test_half_open_requests_get_408_and_are_closed(node: RunningNode) -> None:
    """Defect 5: request heads that never complete (nothing, half an upgrade)
    are answered 408 and closed after header_timeout_s; none is held."""
    partial = b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(raw(node)) for _ in range(50)]
        for n, (_, writer) in enumerate(sockets):
            if n % 2:
                writer.write(partial)
        answers = await asyncio.gather(*(_answer(reader) for reader, _ in sockets))
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers[0]
    async with httpx.AsyncClient(base_url=node.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_oversized_or_too_many_headers_get_431(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 5: a head over max_header_bytes (sent in pieces, never finished)
    or with more than max_header_count fields gets 431 and is closed; the
    node's memory is not spent on it."""
    # An HTTP request's head is refused by the listener, an upgrade's by the
    # gateway (the router hands it over on its first read): one message.
    caplog.set_level(logging.INFO, logger="fieldpush.listener")
    caplog.set_level(logging.INFO, logger="fieldpush.gateway")
    async with raw(node) as (reader, writer):
        writer.write(b"GET /v1/ws HTTP/1.1\r\nX-Big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # up to 1.6 MB: the server stops us long before
                writer.write(b"a" * 16384)
                await writer.drain()
        # The server closes with our unread bytes in its buffer: the kernel may
        # turn that into a reset that destroys the 431 before we read it.
        with contextlib.suppress(ConnectionResetError):
            assert (await _answer(reader)).startswith(b"HTTP/1.1 431 ")
    assert any(
        "refused (431): request head over 8192 bytes" in r.getMessage() for r in caplog.records
    )
    many = b"".join(b"X-%d: 1\r\n" % n for n in range(51))
    for path in (b"/healthz", b"/v1/ws"):
        async with raw(node) as (reader, writer):
            writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
            assert (await _answer(reader)).startswith(b"HTTP/1.1 431 "), path
    async with httpx.AsyncClient(base_url=node.url) as http:
        headers = {f"x-{n}": "1" for n in range(40)}
        assert (await http.get("/healthz", headers=headers)).status_code == 200
    async with phone(node, "alice") as alice:
        await pong_next(alice)


def _masked_ping(payload: bytes) -> bytes:
    """A client PING frame (FIN, opcode 9, masked with a zero key)."""
    return bytes([0x89, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def test_pings_without_reading_the_pongs_close_4008(node: RunningNode) -> None:
    """Defect 4: a client that pings and never reads fills its outbox with
    pongs; past max_outbox_bytes it is closed (4008) like any slow phone."""
    key = base64.b64encode(os.urandom(16))
    upgrade = (
        b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    closed = node.node.metrics.closed
    async with phone(node, "bystander") as bystander, raw(node, receive_buffer=4096) as pinger:
        reader, writer = pinger
        writer.write(upgrade)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
        batch = _masked_ping(b"p" * 125) * 1000

        async def flood() -> bool:
            with contextlib.suppress(ConnectionError):
                writer.write(batch)
                await asyncio.wait_for(writer.drain(), scaled(1))
            return closed[4008] >= 1

        await eventually(flood, timeout=30, message="the pinger is closed with 4008")
        assert closed[4008] == 1
        await pong_next(bystander)
