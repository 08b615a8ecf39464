"""The upgrade's ``Origin`` check in-process: raw upgrades with forged origins."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import connect_phone
from tests.support.timing import scaled

CONSOLE = "https://console.example.com"


async def raw_upgrade(node: RunningNode, *headers: str) -> bytes:
    """Send a hand-written upgrade request; return the response head."""
    host, port = node.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [
            "GET /v1/ws HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            *headers,
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), scaled(5))
        if head.startswith(b"HTTP/1.1 403"):  # refused: the server closes the connection
            rest = await asyncio.wait_for(reader.read(), scaled(5))
            assert rest.startswith(b"origin ")
        return head
    finally:
        writer.close()


@pytest.mark.parametrize("allowed", [(), (CONSOLE,)])
async def test_a_forged_origin_is_refused_before_the_upgrade(allowed: tuple[str, ...]) -> None:
    async with running_node(node_settings(allowed_origins=allowed)) as node:
        for forged in ("https://evil.example.net", "http://console.example.com", "null"):
            head = await raw_upgrade(node, f"Origin: {forged}")
            assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), head
        with pytest.raises(InvalidStatus) as caught:
            async with connect(node.ws_url, origin=Origin("https://evil.example.net")):
                pass
        assert caught.value.response.status_code == 403
        assert node.node.metrics.connections_opened["websocket"] == 0


async def test_an_allowed_origin_and_no_origin_are_upgraded() -> None:
    async with running_node(node_settings(allowed_origins=(CONSOLE,))) as node:
        assert (await raw_upgrade(node, f"Origin: {CONSOLE}")).startswith(b"HTTP/1.1 101 ")
        assert (await raw_upgrade(node)).startswith(b"HTTP/1.1 101 ")  # a phone: no Origin
        async with connect(node.ws_url, origin=Origin(CONSOLE)) as ws:
            assert ws.response is not None and ws.response.status_code == 101
        # A phone's whole conversation, without Origin.
        async with connect_phone(node.ws_url, node.token("alice")) as phone:
            assert phone.welcome["user"] == "alice"
