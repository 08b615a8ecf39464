"""Dispatch that cannot be missed: priorities, pending critical events, acks,
receipts, escalation, presence and the per-user connection cap.

In-process nodes on real sockets, on the memory backend and on a real Redis.
Multi-node behaviour (other nodes, a node killed) is in test_e2e_dispatch.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import Phone, phone, publish
from tests.support.timing import scaled

NodeFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningNode]]


@pytest.fixture(params=["memory", "redis"])
def start_node(request: pytest.FixtureRequest) -> NodeFactory:
    """Starts an in-process node on the memory backend or on the test Redis."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    @contextlib.asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[RunningNode]:
        async with running_node(node_settings(redis_url=redis_url, **settings)) as node:
            yield node

    return start


async def pong_next(device: Phone, request_id: int = 99) -> None:
    """Assert that nothing is waiting for the phone: a ping's pong comes next."""
    reply = await device.request({"type": "ping", "id": request_id})
    assert reply["type"] == "pong", f"expected nothing before the pong, got {reply}"


async def get(node: RunningNode, path: str, role: str = "dispatcher") -> httpx.Response:
    headers = {"Authorization": f"Bearer {node.token('watcher', role)}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.get(path, headers=headers)


async def next_of_kind(device: Phone, kind: str) -> dict[str, Any]:
    """The next event of ``kind`` (others, such as receipts, are skipped)."""
    while True:
        for event in await device.next_events():
            if event["kind"] == kind:
                return event


# ------------------------------------------------------------------ priorities


async def test_low_events_wait_for_the_next_non_low_event(start_node: NodeFactory) -> None:
    async with start_node() as node, phone(node, "alice") as alice:
        low = [await publish(node, ["user:alice"], {"n": n}, priority="low") for n in range(2)]
        await pong_next(alice)
        high = await publish(node, ["user:alice"], {"n": 2}, priority="high")
        events = await alice.events(3)
        assert [e["id"] for e in events] == [low[0]["id"], low[1]["id"], high["id"]]
        assert [e["priority"] for e in events] == ["low", "low", "high"]


async def test_low_events_go_out_when_the_low_interval_passed(start_node: NodeFactory) -> None:
    async with start_node(poll_intervals_s={"low": 0.2}) as node, phone(node, "alice") as alice:
        assert alice.welcome["poll"]["low"] == 0.2
        low = await publish(node, ["user:alice"], priority="low")
        (event,) = await alice.events(1)
        assert event["id"] == low["id"]


async def test_normal_events_wait_for_the_window_but_never_hold_a_critical(
    start_node: NodeFactory,
) -> None:
    async with start_node(coalesce_ms=600_000) as node, phone(node, "alice") as alice:
        lone = await publish(node, ["user:alice"], {"n": 0})
        (event,) = await alice.next_events()  # the first after a quiet time: at once
        assert event["id"] == lone["id"]
        follower = await publish(node, ["user:alice"], {"n": 1})
        await pong_next(alice)  # within the (huge) window of the last write: held
        critical = await publish(node, ["user:alice"], {"n": 2}, priority="critical")
        frame = await alice.next_events()
        assert [e["id"] for e in frame] == [follower["id"], critical["id"]]


async def test_critical_and_high_are_written_at_once(start_node: NodeFactory) -> None:
    async with start_node(coalesce_ms=600_000) as node, phone(node, "alice") as alice:
        for priority in ("high", "critical"):
            sent = await publish(node, ["user:alice"], priority=priority)
            (event,) = await alice.next_events()
            assert event["id"] == sent["id"]


# ------------------------------------------------------------- pending, acks


async def test_unacked_critical_event_is_redelivered_on_every_new_connection(
    start_node: NodeFactory,
) -> None:
    async with start_node() as node:
        async with phone(node, "alice") as alice:
            critical = await publish(node, ["user:alice"], {"order": 7}, priority="critical")
            (first,) = await alice.events(1)
            assert first["id"] == critical["id"]
        later = await publish(node, ["user:alice"], {"n": 1})
        past_it = {"user:alice": later["offsets"]["user:alice"]}
        for _ in range(2):  # not acked: every connection gets it again
            async with phone(node, "alice", subs=past_it) as again:
                (event,) = await again.events(1)
                assert event["id"] == critical["id"] and event["data"] == {"order": 7}
                assert event["offset"] == critical["offsets"]["user:alice"]
                await pong_next(again)
        async with phone(node, "alice", subs=past_it, device="tablet") as again:
            await again.events(1)
            await again.send({"type": "ack", "ids": [critical["id"]]})
            await again.send({"type": "ack", "ids": [critical["id"], "no-such-event"]})
            await pong_next(again)  # the acks were handled (in order) before the ping
        async with phone(node, "alice", subs=past_it) as after_ack:
            await pong_next(after_ack)


async def test_pending_event_in_the_replay_range_is_sent_once(start_node: NodeFactory) -> None:
    async with start_node() as node:
        before = await publish(node, ["user:alice"], {"n": 0})
        critical = await publish(node, ["user:alice", "team:north"], {"n": 1}, priority="critical")
        subs = {"user:alice": before["offsets"]["user:alice"], "team:north": None}
        async with phone(node, "alice", teams=("north",), subs=subs) as alice:
            (event,) = await alice.events(1)
            assert event["id"] == critical["id"]
            await pong_next(alice)
            # Live, to both of its channels: still written once on this connection.
            again = await publish(node, ["user:alice", "team:north"], {"n": 2}, priority="critical")
            (live,) = await alice.events(1)
            assert live["id"] == again["id"]
            await pong_next(alice)


# ------------------------------------------------------------------- receipts


async def test_receipts_show_delivery_and_ack_and_are_pushed_to_dispatch(
    start_node: NodeFactory,
) -> None:
    async with (
        start_node() as node,
        phone(node, "disp", role="dispatcher", subs={"dispatch": None}) as console,
        phone(node, "alice", device="alice-phone") as alice,
    ):
        sent = await publish(node, ["user:alice"], priority="critical", kind="work_order.urgent")
        await alice.events(1)
        announced = await next_of_kind(console, "receipt")
        assert announced["data"]["event"] == sent["id"]
        assert announced["data"]["kind"] == "work_order.urgent"
        (delivered,) = announced["data"]["receipts"]
        assert delivered["user"] == "alice" and delivered["device"] == "alice-phone"
        assert delivered["delivered_at"] and delivered["acked_at"] is None
        await alice.send({"type": "ack", "ids": [sent["id"]]})
        (acked,) = (await next_of_kind(console, "receipt"))["data"]["receipts"]
        assert acked["acked_at"] >= acked["delivered_at"] == delivered["delivered_at"]

        reply = await get(node, f"/v1/events/{sent['id']}/receipts")
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["id"] == sent["id"] and body["kind"] == "work_order.urgent"
        (receipt,) = body["recipients"]
        assert receipt == {
            "user": "alice",
            "device": "alice-phone",
            "delivered_at": delivered["delivered_at"],
            "acked_at": acked["acked_at"],
        }


async def test_team_receipts_list_known_members_online_or_not(start_node: NodeFactory) -> None:
    async with start_node() as node:
        async with phone(node, "carol", teams=("north",)):
            pass  # carol is known as a member of team north, now offline
        async with phone(node, "bob", teams=("north",), subs={"team:north": None}) as bob:
            await wait_for_presence(node, "team:north", {"bob"})
            sent = await publish(node, ["team:north"], priority="critical")
            await bob.events(1)
            await bob.send({"type": "ack", "ids": [sent["id"]]})
            await pong_next(bob)
            body = (await get(node, f"/v1/events/{sent['id']}/receipts")).json()
            by_user = {r["user"]: r for r in body["recipients"]}
            assert set(by_user) == {"bob", "carol"}
            assert by_user["bob"]["acked_at"] and by_user["bob"]["device"] == "phone-1"
            assert by_user["carol"] == {
                "user": "carol",
                "device": None,
                "delivered_at": None,
                "acked_at": None,
            }


async def test_a_poll_counts_as_delivered(start_node: NodeFactory) -> None:
    async with start_node() as node:
        before = await publish(node, ["user:alice"], {"n": 0})
        sent = await publish(node, ["user:alice"], priority="critical")
        headers = {"Authorization": f"Bearer {node.token('alice')}"}
        body = {"subs": {"user:alice": before["offsets"]["user:alice"]}, "device": "old-phone"}
        async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
            reply = await http.post("/v1/poll", json=body, headers=headers)
        assert [e["id"] for e in reply.json()["events"]] == [sent["id"]]
        async with asyncio.timeout(scaled(5)):
            while True:  # recorded in the background, right after the reply
                receipts = (await get(node, f"/v1/events/{sent['id']}/receipts")).json()
                (receipt,) = receipts["recipients"]
                if receipt["delivered_at"]:
                    break
                await asyncio.sleep(0.01)
        assert receipt["device"] == "old-phone" and receipt["acked_at"] is None


async def test_receipts_of_unknown_or_non_critical_events_are_404(
    start_node: NodeFactory,
) -> None:
    async with start_node() as node:
        normal = await publish(node, ["user:alice"])
        for event_id in (normal["id"], "nope"):
            reply = await get(node, f"/v1/events/{event_id}/receipts")
            assert reply.status_code == 404
            assert reply.json()["error"]["code"] == "not_found"
        assert (await get(node, "/v1/events/x/receipts", role="sales")).status_code == 403


# ----------------------------------------------------------------- escalation


async def test_unacked_critical_event_is_escalated_once_to_dispatch(
    start_node: NodeFactory,
) -> None:
    settings = {"escalation_interval_s": 0.05, "ack_deadlines_s": {"work_order.urgent": 1.5}}
    async with (
        start_node(**settings) as node,
        phone(node, "disp", role="dispatcher", subs={"dispatch": None}) as console,
        phone(node, "alice") as alice,
        phone(node, "bob") as bob,
    ):
        # Acked in time (deadline from the kind): never escalated.
        acked = await publish(
            node, ["user:alice", "user:bob"], priority="critical", kind="work_order.urgent"
        )
        for device in (alice, bob):
            await device.events(1)
            await device.send({"type": "ack", "ids": [acked["id"]]})
        # Alice acks, bob does not (deadline from the publish, after the first's).
        missed = await publish(
            node,
            ["user:alice", "user:bob"],
            priority="critical",
            kind="work_order.urgent",
            ack_deadline_s=2.0,
        )
        await alice.events(1)
        await alice.send({"type": "ack", "ids": [missed["id"]]})
        escalation = await next_of_kind(console, "escalation")
        assert escalation["channel"] == "dispatch"
        assert escalation["data"] == {
            "event": missed["id"],
            "kind": "work_order.urgent",
            "users": ["bob"],
        }
        async with asyncio.timeout(scaled(5)):  # counted after the publish returned
            while node.node.metrics.escalations < 1:
                await asyncio.sleep(0.01)
        assert node.node.metrics.escalations == 1


async def test_escalation_goes_to_the_webhook_retrying_failures(start_node: NodeFactory) -> None:
    calls: list[dict[str, Any]] = []
    answers = iter([b"500 Internal Server Error", b"200 OK"])
    got_two = asyncio.Event()

    async def webhook(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        calls.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 " + next(answers) + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        if len(calls) == 2:
            got_two.set()

    server = await asyncio.start_server(webhook, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = {
        "escalation_interval_s": 0.05,
        "escalation_webhook_url": f"http://127.0.0.1:{port}/hook",
    }
    async with server, start_node(**settings) as node:
        sent = await publish(node, ["user:nobody"], priority="critical", ack_deadline_s=0.1)
        await asyncio.wait_for(got_two.wait(), scaled(10))
    expected = {"type": "escalation", "event": sent["id"], "kind": "test.kind", "users": ["nobody"]}
    assert calls == [expected, expected]


# ------------------------------------------------------------------- presence


async def wait_for_presence(node: RunningNode, channel: str, users: set[str]) -> dict[str, Any]:
    """Presence is written in the background: wait until it shows ``users``."""
    async with asyncio.timeout(scaled(5)):
        while True:
            body: dict[str, Any] = (await get(node, f"/v1/presence?channel={channel}")).json()
            if {u["user"] for u in body["users"]} == users:
                return body
            await asyncio.sleep(0.01)


async def test_presence_of_users_and_channels(start_node: NodeFactory) -> None:
    async with start_node() as node:
        async with (
            phone(node, "alice", teams=("north",), subs={"team:north": None}, device="a1"),
            phone(node, "alice", device="a2"),
            phone(node, "bob", teams=("north",), subs={"team:north": None}, device="b1"),
        ):
            body = await wait_for_presence(node, "team:north", {"alice", "bob"})
            devices = {u["user"]: [d["device"] for d in u["devices"]] for u in body["users"]}
            assert devices == {"alice": ["a1"], "bob": ["b1"]}
            user = await wait_for_user(node, "alice", lambda b: len(b["devices"]) == 2)
            assert user["online"] is True
            assert [d["device"] for d in user["devices"]] == ["a1", "a2"]  # oldest first
            for device in user["devices"]:
                assert device["node"] == "test-node"
                assert device["since"] <= device["last_seen"]
        offline = await wait_for_user(node, "alice", lambda b: not b["online"])
        assert offline["devices"] == [] and offline["last_seen"] is not None
        await wait_for_presence(node, "team:north", set())
        never = (await get(node, "/v1/presence/users/nobody")).json()
        assert never == {"user": "nobody", "online": False, "last_seen": None, "devices": []}
        for path in ("/v1/presence?channel=broadcast", "/v1/presence/users/alice"):
            assert (await get(node, path, role="sales")).status_code == 403
        assert (await get(node, "/v1/presence")).status_code == 422
        assert (await get(node, "/v1/presence?channel=bogus")).status_code == 422


async def wait_for_user(
    node: RunningNode, user: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async with asyncio.timeout(scaled(5)):
        while True:
            body: dict[str, Any] = (await get(node, f"/v1/presence/users/{user}")).json()
            if done(body):
                return body
            await asyncio.sleep(0.01)


# ------------------------------------------------------------ per-user cap


async def test_connection_cap_per_user_closes_the_oldest(start_node: NodeFactory) -> None:
    async with (
        start_node(max_connections_per_user=2) as node,
        phone(node, "alice", device="d1") as oldest,
        phone(node, "alice", device="d2") as second,
    ):
        await wait_for_user(node, "alice", lambda b: len(b["devices"]) == 2)
        async with phone(node, "alice", device="d3") as newest:
            assert await oldest.closed_with() == 4029
            await pong_next(second)
            await pong_next(newest)


async def test_connection_cap_per_user_refuses_the_newest(start_node: NodeFactory) -> None:
    settings = {"max_connections_per_user": 1, "connections_per_user_policy": "newest"}
    async with start_node(**settings) as node, phone(node, "alice") as first:
        await wait_for_user(node, "alice", lambda b: b["online"])
        async with phone(node, "alice", hello=False) as refused:
            await refused.send({"type": "hello", "token": node.token("alice"), "device": "x"})
            assert await refused.closed_with() == 4029
        await pong_next(first)
        async with phone(node, "bob"):
            pass  # other users are not affected
