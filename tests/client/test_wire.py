"""What the SDK writes on the socket is exactly the protocol types' ``to_wire()``:
a scripted server (answering with the server-side types) records every frame."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from fieldpush_client import PushClient, SyncClient, SyncStore, __version__
from fieldpush_client.protocol import (
    SUBPROTOCOLS,
    Change,
    Changes,
    ClientMessage,
    Codec,
    Digest,
    Hello,
    Mutate,
    Mutated,
    MutationResult,
    Ping,
    Pong,
    ProtocolError,
    Pull,
    ServerMessage,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    codec_for,
    parse_client_message,
    record_hash,
)
from tests.support.stores import STORE_KEY
from tests.support.timing import scaled


@dataclass
class ScriptedServer:
    """Answers each request with the server types; ``wrong_replies`` answers
    a ``ping`` with ``unsubscribed``."""

    url: str = ""
    frames: list[dict[str, Any]] = field(default_factory=list)
    wrong_replies: bool = False

    def reply(self, message: ClientMessage) -> ServerMessage | None:
        if isinstance(message, Hello):
            subs = {"user:alice": {"offset": "e:0-0", "recovered": True}}
            return Welcome("s1", "alice", "sales", "n1", 25.0, {"low": 900.0}, subs)
        if isinstance(message, Subscribe):
            return Subscribed(message.id, message.channel, "e:1-1", True)
        if isinstance(message, Ping) and not self.wrong_replies:
            return Pong(message.id, 1)
        if isinstance(message, Unsubscribe | Ping):
            return Unsubscribed(message.id, "team:b")
        if isinstance(message, Mutate):
            results = [MutationResult(mid=m.mid, status="applied") for m in message.mutations]
            return Mutated(id=message.id, results=results)
        if isinstance(message, Pull):
            change = Change(type="customer", rid="c1", fields={"stage": "won"})
            return Changes(id=message.id, changes=[change], cursor="k1", more=False)
        return None  # ack

    async def handle(self, ws: ServerConnection) -> None:
        codec: Codec = codec_for(ws.subprotocol)
        async for frame in ws:
            wire = codec.decode(frame if isinstance(frame, bytes) else frame.encode())
            self.frames.append(wire)
            answer = self.reply(parse_client_message(wire))
            if answer is not None:
                data = codec.encode(answer.to_wire())
                await ws.send(data if codec.binary else data.decode())


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    subprotocols = [Subprotocol(name) for name in SUBPROTOCOLS]
    async with serve(scripted.handle, "127.0.0.1", 0, subprotocols=subprotocols) as ws:
        port = ws.sockets[0].getsockname()[1]
        scripted.url = f"ws://127.0.0.1:{port}/v1/ws"
        yield scripted


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_every_message_the_sdk_sends_is_a_protocol_type_on_the_wire(
    server: ScriptedServer, codec: str
) -> None:
    store = SyncStore(":memory:", key=STORE_KEY, wall_ms=lambda: 5)
    edit = store.edit("customer", "c1", {"stage": "lost"})
    async with PushClient(
        server.url, token="t0k", device="pixel", codec=codec, subscriptions=["team:a"]
    ) as client:
        await client.wait_connected(scaled(5))
        await client.subscribe("team:b")
        await client.ping()
        await client.ack("e1")
        await client.unsubscribe("team:b")
        sync = SyncClient(client, store, types=["customer"], page_size=50, auto=False)
        await sync.sync()
    store.close()

    mutation = {"mid": edit.mid, "type": "customer", "rid": "c1", "fields": {"stage": "lost"}}
    assert server.frames == [
        {
            "type": "hello",
            "device": "pixel",
            "token": "t0k",
            "subs": {"team:a": None},
            "app": f"fieldpush_client/{__version__}",
        },
        {"type": "subscribe", "id": 1, "channel": "team:b"},
        {"type": "ping", "id": 2},
        {"type": "ack", "ids": ["e1"]},
        {"type": "unsubscribe", "id": 3, "channel": "team:b"},
        {"type": "mutate", "id": 4, "mutations": [{**mutation, "hlc": [5, 0]}]},
        {"type": "pull", "id": 5, "types": ["customer"], "limit": 50},
        # Caught up after a page of changes: one more pull carries the digest.
        {
            "type": "pull",
            "id": 6,
            "cursor": "k1",
            "types": ["customer"],
            "limit": 50,
            "digest": {"customer": Digest().add(record_hash("c1", {"stage": "won"})).to_wire()},
        },
    ]
    assert all(parse_client_message(frame).to_wire() == frame for frame in server.frames)


async def test_a_reply_of_the_wrong_type_is_a_protocol_error(server: ScriptedServer) -> None:
    server.wrong_replies = True
    async with PushClient(server.url, token="t0k", device="pixel") as client:
        await client.wait_connected(scaled(5))
        with pytest.raises(ProtocolError, match="expected Pong"):
            await client.ping()
