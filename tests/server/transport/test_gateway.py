"""The WebSocket gateway in-process: real sockets on port 0, memory backend."""

from __future__ import annotations

import json
import logging
import time

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import Phone, api_get, phone, publish
from tests.support.scrape import value
from tests.support.timing import eventually


@pytest.fixture
async def node() -> RunningNode:
    async with running_node(node_settings(hello_timeout_s=0.5, max_frame_bytes=4096)) as running:
        yield running


async def test_welcome_lists_own_user_channel_and_checks_permissions(node: RunningNode) -> None:
    subs = {
        "team:north": None,
        "team:south": None,
        "broadcast": None,
        "dispatch": None,
        "user:bob": None,
    }
    async with phone(node, "alice", teams=("north",), subs=subs) as alice:
        welcome = alice.welcome
        assert (
            welcome["user"] == "alice"
            and welcome["role"] == "sales"
            and welcome["node"] == "test-node"
        )
        assert welcome["heartbeat_s"] == node.settings.heartbeat_s
        assert welcome["poll"]["visit_plan"] == 900
        granted = {ch for ch, state in welcome["subs"].items() if "offset" in state}
        assert granted == {"user:alice", "team:north", "broadcast"}
        for refused in ("team:south", "dispatch", "user:bob"):
            assert welcome["subs"][refused] == {"error": "forbidden"}
        assert all(welcome["subs"][ch]["recovered"] is True for ch in granted)


@pytest.mark.parametrize("binary", [False, True])
async def test_published_event_reaches_subscribers_in_both_codecs(
    node: RunningNode, binary: bool
) -> None:
    async with phone(
        node, "alice", teams=("north",), subs={"team:north": None}, binary=binary
    ) as alice:
        reply = await publish(node, ["team:north"], {"order": 7}, priority="high")
        (event,) = await alice.events(1)
        assert event["channel"] == "team:north"
        assert event["id"] == reply["id"]
        assert event["offset"] == reply["offsets"]["team:north"]  # type: ignore[index]
        assert event["kind"] == "test.kind" and event["priority"] == "high"
        assert event["data"] == {"order": 7}
        assert abs(event["ts"] - time.time() * 1000) < 60_000


async def test_subscribe_unsubscribe_and_forbidden(node: RunningNode) -> None:
    async with phone(node, "alice", teams=("north",)) as alice:
        reply = await alice.request({"type": "subscribe", "id": 1, "channel": "team:north"})
        assert reply["type"] == "subscribed" and reply["id"] == 1 and reply["recovered"] is True
        refused = await alice.request({"type": "subscribe", "id": 2, "channel": "team:south"})
        assert refused == {
            "type": "error",
            "id": 2,
            "code": "forbidden",
            "message": refused["message"],
        }
        again = await alice.request({"type": "subscribe", "id": 3, "channel": "team:north"})
        assert again["type"] == "error" and again["code"] == "bad_request"
        await publish(node, ["team:north"], {"n": 1})
        assert (await alice.events(1))[0]["data"] == {"n": 1}
        gone = await alice.request({"type": "unsubscribe", "id": 4, "channel": "team:north"})
        assert gone == {"type": "unsubscribed", "id": 4, "channel": "team:north"}
        await publish(node, ["team:north"], {"n": 2})
        await publish(node, ["user:alice"], {"n": 3})
        assert (await alice.events(1))[0]["data"] == {"n": 3}  # nothing from team:north
        own = await alice.request({"type": "unsubscribe", "id": 5, "channel": "user:alice"})
        assert own["type"] == "error" and own["code"] == "bad_request"
        pong = await alice.request({"type": "ping", "id": 6})
        assert pong["type"] == "pong" and pong["id"] == 6


async def test_bad_requests_get_errors_and_the_connection_stays_open(node: RunningNode) -> None:
    async with phone(node, "alice") as alice:
        cases = [
            {"type": "teleport", "id": 1},
            {"type": "subscribe", "id": 2},
            {"type": "subscribe", "id": 3, "channel": "team:north", "sinse": None},
            {"type": "ping"},
            {"no_type": True},
            {"type": "hello", "device": "again"},
        ]
        for case in cases:
            reply = await alice.request(case)
            assert reply["type"] == "error" and reply["code"] == "bad_request", (case, reply)
            if isinstance(case.get("id"), int):
                assert reply["id"] == case["id"]
        assert (await alice.request({"type": "ping", "id": 9}))["type"] == "pong"
    assert node.node.metrics.bad_requests == len(cases) - 1  # the second hello is not a parse error


async def expect_close(
    node: RunningNode,
    *frames: str | bytes,
    subprotocol: str = "fieldpush.v1.json",
    headers: dict[str, str] | None = None,
) -> int | None:
    async with connect(node.ws_url, subprotocols=[subprotocol], additional_headers=headers) as ws:  # type: ignore[list-item]
        for frame in frames:
            await ws.send(frame)
        return await Phone(ws, False).closed_with()


async def test_bad_input_closes_only_the_offender(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldpush")
    async with phone(node, "bystander", teams=("north",), subs={"team:north": None}) as bystander:
        expired = node.token("alice", ttl_s=-60)
        forged = jwt.encode(
            {"sub": "alice", "role": "admin", "exp": time.time() + 60},
            "a-wrong-secret-that-is-long-enough-for-hs256",
            algorithm="HS256",
        )
        no_sub = jwt.encode(
            {"role": "admin", "exp": time.time() + 60},
            node.settings.jwt_secret.reveal(),
            algorithm="HS256",
        )
        unsigned = jwt.encode(
            {"sub": "alice", "role": "admin", "exp": time.time() + 60}, None, algorithm="none"
        )
        hello = lambda token: json.dumps({"type": "hello", "token": token, "device": "d"})  # noqa: E731
        cases: list[tuple[str, tuple[str | bytes, ...], dict[str, object], int]] = [
            ("not UTF-8 on a JSON text frame", (b"\xff\xfe\x00",), {}, 1007),
            ("not JSON", ("{not json",), {}, 1007),
            ("not msgpack", (b"\xc1",), {"subprotocol": "fieldpush.v1.msgpack"}, 1007),
            ("over max_frame_bytes", ("x" * 5000,), {}, 1009),
            ("a request before hello", (json.dumps({"type": "ping", "id": 1}),), {}, 4001),
            ("expired token", (hello(expired),), {}, 4001),
            ("wrong signature", (hello(forged),), {}, 4001),
            ("no sub claim", (hello(no_sub),), {}, 4001),
            ("alg none", (hello(unsigned),), {}, 4001),
            ("no token anywhere", (hello(None),), {}, 4001),
            ("expired header token", (), {"headers": {"Authorization": f"Bearer {expired}"}}, 4001),
            ("no hello in time", (), {}, 4001),
        ]
        for what, frames, options, code in cases:
            caplog.clear()
            assert await expect_close(node, *frames, **options) == code, what  # type: ignore[arg-type]
            lines = [r.getMessage() for r in caplog.records if r.name.startswith("fieldpush")]
            assert len(lines) == 1, (what, lines)  # one log line per refusal
            assert not any(t in lines[0] for t in (expired, forged, no_sub, unsigned)), lines
        # The bystander noticed nothing.
        await publish(node, ["team:north"], {"still": "here"})
        assert (await bystander.events(1))[0]["data"] == {"still": "here"}


async def test_token_in_authorization_header(node: RunningNode) -> None:
    headers = {"Authorization": f"Bearer {node.token('alice')}"}
    async with connect(node.ws_url, additional_headers=headers) as ws:  # no subprotocol: JSON
        await ws.send(json.dumps({"type": "hello", "device": "d"}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["user"] == "alice"


async def test_upgrade_refusals(node: RunningNode) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as caught:
        async with connect(node.url.replace("http", "ws") + "/elsewhere"):
            pass
    assert caught.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as caught:
        async with connect(node.ws_url, subprotocols=["chat.v2"]):  # type: ignore[list-item]
            pass
    assert caught.value.response.status_code == 400


def count_pongs(device: Phone) -> list[bytes]:
    """Record every WebSocket ping the phone answers (websockets answers them
    inside the protocol, as it processes the ping frame)."""
    answered: list[bytes] = []
    recv_frame = device.ws.protocol.recv_frame

    def counting(frame: Frame) -> None:
        recv_frame(frame)
        if frame.opcode is Opcode.PING:
            answered.append(frame.data)

    device.ws.protocol.recv_frame = counting  # type: ignore[method-assign]
    return answered


async def test_dead_connections_are_closed_by_the_heartbeat() -> None:
    async with running_node(node_settings(heartbeat_s=0.2)) as node:
        async with phone(node, "alice") as alice:
            alice.ws.protocol.send_pong = lambda data: None  # type: ignore[method-assign]
            # websockets answers pings inside the protocol; silence it by not reading.
            writer = alice.ws.transport
            writer.pause_reading()
            await eventually(
                lambda: node.node.metrics.closed[1011], message="the silent phone is closed"
            )
            assert node.node.metrics.closed[1011] == 1
            writer.resume_reading()
        async with phone(node, "bob") as bob:  # a live phone answers pings and stays
            answered = count_pongs(bob)
            # Three pings answered: the heartbeat checked bob at least twice since.
            await eventually(lambda: len(answered) >= 3, message="bob answered three pings")
            assert (await bob.request({"type": "ping", "id": 1}))["type"] == "pong"
            assert node.node.metrics.closed[1011] == 1  # still only alice


async def test_drain_sends_goaway_then_closes_those_who_stay() -> None:
    settings = node_settings(goaway_min_ms=10, goaway_max_ms=50)
    async with running_node(settings) as node, phone(node, "alice") as alice:
        for conn in node.node.registry.connections():
            conn.shutdown()
        goaway = await alice.recv()
        assert goaway == {"type": "goaway", "reason": "drain", "reconnect_after_ms": [10, 50]}
        assert await alice.closed_with() == 1012  # it did not leave within the window


async def test_limits_subscriptions_and_message_rate() -> None:
    settings = node_settings(max_subscriptions=3, rate_limit_per_s=0.001, rate_limit_burst=5)
    async with running_node(settings) as node:
        subs = {"broadcast": None, "team:a": None, "team:b": None}
        async with phone(node, "alice", teams=("a", "b", "c"), subs=subs) as alice:
            granted = [ch for ch, state in alice.welcome["subs"].items() if "offset" in state]
            assert granted == ["user:alice", "broadcast", "team:a"]  # the cap, own channel first
            assert alice.welcome["subs"]["team:b"] == {"error": "forbidden"}
            # hello took one token of five: four more requests pass, then rate_limited.
            refused = await alice.request({"type": "subscribe", "id": 1, "channel": "team:c"})
            assert (refused["code"], refused["id"]) == ("forbidden", 1)
            for n in range(2, 5):
                assert (await alice.request({"type": "ping", "id": n}))["type"] == "pong"
            for n in range(5, 10):  # five refusals in a row are tolerated
                reply = await alice.request({"type": "ping", "id": n})
                assert (reply["type"], reply["code"], reply["id"]) == ("error", "rate_limited", n)
            await alice.send({"type": "ping", "id": 10})  # the sixth closes
            assert await alice.closed_with() == 4029
            text = (await api_get(node, "/metrics")).text
            assert value(text, "fieldpush_rate_limited_total", what="messages") == 6


async def test_a_full_node_refuses_the_upgrade() -> None:
    from websockets.exceptions import InvalidStatus

    async with running_node(node_settings(max_connections=1)) as node, phone(node, "alice"):
        with pytest.raises(InvalidStatus) as caught:
            async with phone(node, "bob"):
                pass
        assert caught.value.response.status_code == 503
        assert caught.value.response.headers["Retry-After"] == "5"
        text = (await api_get(node, "/metrics")).text
        assert value(text, "fieldpush_handshake_refusals_total", reason="unavailable") == 1
        assert value(text, "fieldpush_handshakes_total", outcome="accepted") == 1


async def test_a_phone_that_does_not_read_is_closed_and_others_carry_on() -> None:
    subs = {"team:north": None}
    async with (
        running_node(node_settings(max_outbox_bytes=64 * 1024, max_publish_bytes=300_000)) as node,
        phone(node, "stalled", teams=("north",), subs=subs) as stalled,
        phone(node, "healthy", teams=("north",), subs=subs) as healthy,
    ):
        stalled.ws.transport.pause_reading()  # the phone stops reading its socket
        sent = 0
        while node.node.metrics.closed[4008] == 0 and sent < 500:  # past the kernel's buffers
            await publish(node, ["team:north"], {"pad": "x" * 200_000, "n": sent})
            sent += 1
            assert (await healthy.events(1))[0]["data"]["n"] == sent - 1
        assert node.node.metrics.closed[4008] == 1
        later = await publish(node, ["team:north"], {"n": "after"})
        assert (await healthy.events(1))[0]["id"] == later["id"]
        stalled.ws.transport.resume_reading()
