"""The first read of a connection decides who serves it (transport/router.py):
an upgrade to /v1/ws goes straight to the gateway, anything else to uvicorn's
HTTP protocol. Raw sockets against a real node: heads in pieces, first reads
too short to tell, and a hello written together with the upgrade."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator

import pytest

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.raw import raw
from tests.support.timing import scaled


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings()) as running:
        yield running


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: fieldpush.v1.json\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )


def masked_text(payload: bytes) -> bytes:
    """A client text frame (FIN, masked with a zero key: the payload as it is)."""
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        length = bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return b"\x81" + length + b"\0\0\0\0" + payload


def hello(node: RunningNode, user: str) -> bytes:
    token = node.token(user)
    return masked_text(json.dumps({"type": "hello", "token": token, "device": "d1"}).encode())


async def first_message(reader: asyncio.StreamReader) -> dict[str, object]:
    """The 101, then the first server frame (unmasked, text), decoded."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(5))
    assert head.startswith(b"HTTP/1.1 101 "), head
    first, second = await asyncio.wait_for(reader.readexactly(2), scaled(5))
    assert first == 0x81
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    message: dict[str, object] = json.loads(await reader.readexactly(length))
    return message


async def test_an_upgrade_head_in_pieces_is_put_together(node: RunningNode) -> None:
    request = upgrade_request()
    async with raw(node) as (reader, writer):
        for start in range(0, len(request), 7):
            writer.write(request[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0)  # let the server read each piece on its own
        writer.write(hello(node, "alice"))
        assert (await first_message(reader))["type"] == "welcome"


async def test_a_hello_written_with_the_upgrade_is_not_lost(node: RunningNode) -> None:
    async with raw(node) as (reader, writer):
        writer.write(upgrade_request() + hello(node, "bob"))
        assert (await first_message(reader))["type"] == "welcome"


@pytest.mark.parametrize("first", [b"G", b"GET /v1", b"GET /v1/ws"])
async def test_a_first_read_too_short_to_tell_still_upgrades(
    node: RunningNode, first: bytes
) -> None:
    """Fewer bytes than ``GET /v1/ws`` and the character after it go to
    uvicorn's HTTP protocol, which upgrades to the gateway as well."""
    request = upgrade_request()
    async with raw(node) as (reader, writer):
        writer.write(first)
        await writer.drain()
        await asyncio.sleep(0)
        writer.write(request[len(first) :] + hello(node, "carol"))
        assert (await first_message(reader))["type"] == "welcome"


@pytest.mark.parametrize("path", [b"/v1/wsx", b"/v1/ws/", b"/healthz"])
async def test_other_paths_go_to_http(node: RunningNode, path: bytes) -> None:
    async with raw(node) as (reader, writer):
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), scaled(5))
    status = answer.split(b"\r\n", 1)[0]
    assert status == (b"HTTP/1.1 200 OK" if path == b"/healthz" else b"HTTP/1.1 404 Not Found")
