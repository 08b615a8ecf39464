"""Raw protocol clients for tests: a real WebSocket, messages as plain dicts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgpack
from websockets.asyncio.client import ClientConnection, connect

from tests.support.node import RunningNode
from tests.support.timing import eventually, scaled


class Phone:
    """One test phone: sends and receives protocol messages as dicts."""

    def __init__(self, ws: ClientConnection, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.welcome: dict[str, Any] = {}

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(msgpack.packb(message) if self.binary else json.dumps(message))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), scaled(timeout))
        value: dict[str, Any] = msgpack.unpackb(frame) if self.binary else json.loads(frame)
        return value

    async def events(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The next ``count`` events, from ``event`` and ``events`` frames alike.
        Fails if any other message arrives in between."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            message = await self.recv(timeout)
            if message["type"] == "event":
                found.append(message)
            elif message["type"] == "events":
                found.extend({"type": "event", **item} for item in message["events"])
            else:
                raise AssertionError(f"expected events, got {message}")
        assert len(found) == count, f"got {len(found)} events, expected {count}"
        return found

    async def next_events(self, timeout: float = 5) -> list[dict[str, Any]]:
        """The events of the next frame (one ``event`` or several in ``events``)."""
        message = await self.recv(timeout)
        if message["type"] == "event":
            return [message]
        if message["type"] == "events":
            return [{"type": "event", **item} for item in message["events"]]
        raise AssertionError(f"expected events, got {message}")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self.send(message)
        return await self.recv()

    async def closed_with(self, timeout: float = 5) -> int | None:
        """Wait until the server closes the connection; return the close code."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(scaled(timeout)):
                while True:
                    await self.ws.recv()
        await asyncio.wait_for(self.ws.wait_closed(), scaled(timeout))
        return self.ws.close_code


@contextlib.asynccontextmanager
async def connect_phone(
    ws_url: str,
    token: str | None,
    *,
    subs: dict[str, str | None] | None = None,
    binary: bool = False,
    hello: bool = True,
    device: str = "phone-1",
) -> AsyncIterator[Phone]:
    """A connected phone; after ``hello`` (unless ``hello=False``) with its welcome read."""
    subprotocol = "fieldpush.v1.msgpack" if binary else "fieldpush.v1.json"
    async with connect(ws_url, subprotocols=[subprotocol], compression=None) as ws:  # type: ignore[list-item]
        client = Phone(ws, binary)
        if hello:
            message: dict[str, Any] = {"type": "hello", "token": token, "device": device}
            if subs is not None:
                message["subs"] = subs
            client.welcome = await client.request(message)
            assert client.welcome["type"] == "welcome", client.welcome
        yield client


def phone(
    node: RunningNode,
    user: str = "alice",
    *,
    role: str = "sales",
    teams: tuple[str, ...] = (),
    token: str | None = None,
    **options: Any,
) -> contextlib.AbstractAsyncContextManager[Phone]:
    """A phone of ``user`` connected to an in-process node."""
    return connect_phone(node.ws_url, token or node.token(user, role, teams), **options)


async def publish(
    node: RunningNode,
    channels: list[str],
    data: dict[str, Any] | None = None,
    *,
    kind: str = "test.kind",
    priority: str = "normal",
    **extra: Any,
) -> dict[str, Any]:
    """Publish through the node's HTTP API as a dispatcher; assert 201."""
    body = {"channels": channels, "kind": kind, "priority": priority, "data": data or {}, **extra}
    headers = {"Authorization": f"Bearer {node.token('disp', 'dispatcher')}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        reply = await http.post("/v1/publish", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def pong_next(device: Phone, request_id: int = 99) -> None:
    """Assert that nothing is waiting for the phone: a ping's pong comes next
    (the server handles a phone's messages in order, so whatever it sent before
    the pong has arrived by then)."""
    reply = await device.request({"type": "ping", "id": request_id})
    assert reply["type"] == "pong", f"expected nothing before the pong, got {reply}"


async def next_of_kind(device: Phone, kind: str, timeout: float = 5) -> dict[str, Any]:
    """The next event of ``kind`` (others, such as receipts, are skipped)."""
    while True:
        for event in await device.next_events(timeout):
            if event["kind"] == kind:
                return event


async def api_get(node: RunningNode, path: str, role: str = "dispatcher") -> httpx.Response:
    """GET ``path`` from the node's HTTP API as a user of ``role``."""
    headers = {"Authorization": f"Bearer {node.token('watcher', role)}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.get(path, headers=headers)


async def wait_for_presence(node: RunningNode, channel: str, users: set[str]) -> dict[str, Any]:
    """Presence is written in the background: wait until ``channel`` shows ``users``."""

    async def presence() -> dict[str, Any]:
        body: dict[str, Any] = (await api_get(node, f"/v1/presence?channel={channel}")).json()
        return body

    return await eventually(
        presence,
        until=lambda body: {u["user"] for u in body["users"]} == users,
        message=f"the presence of {channel} shows {sorted(users)}",
    )


async def wait_for_user(
    node: RunningNode, user: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Wait until the presence of ``user`` satisfies ``done``; that presence."""

    async def presence() -> dict[str, Any]:
        body: dict[str, Any] = (await api_get(node, f"/v1/presence/users/{user}")).json()
        return body

    return await eventually(presence, until=done, message=f"the presence of {user} as expected")
