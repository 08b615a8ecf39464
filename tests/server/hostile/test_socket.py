"""Hostile frames on a real socket (issue 11, defects 2 and 3): the offender
gets its close code or error, every other connection carries on, nothing is
stored."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import jwt
import msgpack
import pytest
from websockets.asyncio.client import connect

from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import Phone, phone, pong_next


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node(max_frame_bytes=1 << 20) as running:
        yield running


async def _close_code(
    node: RunningNode, frames: list[str | bytes], binary: bool = False
) -> int | None:
    subprotocol = "fieldpush.v1.msgpack" if binary else "fieldpush.v1.json"
    async with connect(node.ws_url, subprotocols=[subprotocol], max_size=None) as ws:  # type: ignore[list-item]
        for frame in frames:
            await ws.send(frame)
        return await Phone(ws, binary).closed_with()


def _nested(depth: int) -> list[object]:
    value: list[object] = [1]
    for _ in range(depth):
        value = [value]
    return value


def _hello(node: RunningNode, binary: bool) -> str | bytes:
    message = {"type": "hello", "token": node.token("alice"), "device": "d"}
    return msgpack.packb(message) if binary else json.dumps(message)


async def test_deep_structures_close_1007_before_and_after_hello(node: RunningNode) -> None:
    """Defect 2: 60,000 ``[`` (or msgpack arrays, or just past MAX_DEPTH) → close
    1007 with a close frame, never a dropped TCP connection; the bystander stays."""
    deep_json = ["[" * 60_000, '{"type":"ping","id":1,"x":' + "[" * 40 + "]" * 40 + "}"]
    deep_msgpack = [
        b"\x91" * 60_000 + b"\xc0",
        msgpack.packb({"type": "ping", "id": 1, "x": _nested(40)}),
    ]
    async with phone(node, "bystander") as bystander:
        for binary, frames in ((False, deep_json), (True, deep_msgpack)):
            for frame in frames:
                assert await _close_code(node, [frame], binary) == 1007
                assert await _close_code(node, [_hello(node, binary), frame], binary) == 1007
        await pong_next(bystander)


async def test_out_of_range_numbers_on_the_socket_are_answered(node: RunningNode) -> None:
    """Defect 3: a mutate with ``budget: 10**30`` gets ``mutated`` with
    ``validation``; a request id beyond 64 bits gets ``bad_request``, in both codecs."""
    for binary in (False, True):
        async with phone(node, "alice", binary=binary) as alice:
            now = time.time_ns() // 1_000_000
            item = {"mid": "m1", "type": "customer", "rid": "c1", "hlc": [now, 0]}
            item["fields"] = {"name": "X", "owner": "alice", "budget": 10**30}
            if binary:  # msgpack cannot carry it: as JSON on the msgpack wire it cannot be sent
                item["fields"]["budget"] = 2**64 - 1
            reply = await alice.request({"type": "mutate", "id": 1, "mutations": [item]})
            assert reply["type"] == "mutated", reply
            (result,) = reply["results"]
            assert (result["status"], result["reason"]) == ("rejected", "validation"), result
            if not binary:
                await alice.ws.send(json.dumps({"type": "ping", "id": 10**30}))
                error = await alice.recv()
                assert (error["type"], error["code"]) == ("error", "bad_request"), error
            await pong_next(alice)


async def test_a_signed_token_with_a_list_role_is_refused_4001(node: RunningNode) -> None:
    """Defect 3: wrong claim types are the auth error, the hello is answered (4001)."""
    claims = {"sub": "alice", "role": ["admin"], "exp": int(time.time()) + 60}
    token = jwt.encode(claims, node.settings.jwt_secret.reveal(), algorithm="HS256")
    hello = json.dumps({"type": "hello", "token": token, "device": "d"})
    async with phone(node, "bystander") as bystander:
        assert await _close_code(node, [hello]) == 4001
        await pong_next(bystander)
