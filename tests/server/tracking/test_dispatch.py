"""Dispatch that cannot be missed: pending critical events, acks, receipts
and escalation.

In-process nodes on real sockets, on each backend (``start_node``).
Multi-node behaviour (other nodes, a node killed) is in tests/e2e/test_dispatch.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support.node import NodeFactory
from tests.support.phones import (
    api_get,
    next_of_kind,
    phone,
    pong_next,
    publish,
    wait_for_presence,
)
from tests.support.timing import eventually, scaled

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

        reply = await api_get(node, f"/v1/events/{sent['id']}/receipts")
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
            body = (await api_get(node, f"/v1/events/{sent['id']}/receipts")).json()
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

        async def the_receipt() -> dict[str, Any]:
            receipts = (await api_get(node, f"/v1/events/{sent['id']}/receipts")).json()
            (receipt,) = receipts["recipients"]
            return receipt  # type: ignore[no-any-return]

        receipt = await eventually(  # recorded in the background, right after the reply
            the_receipt,
            until=lambda r: r["delivered_at"],
            message="the poll is recorded as a delivery",
        )
        assert receipt["device"] == "old-phone" and receipt["acked_at"] is None


async def test_receipts_of_unknown_or_non_critical_events_are_404(
    start_node: NodeFactory,
) -> None:
    async with start_node() as node:
        normal = await publish(node, ["user:alice"])
        for event_id in (normal["id"], "nope"):
            reply = await api_get(node, f"/v1/events/{event_id}/receipts")
            assert reply.status_code == 404
            assert reply.json()["error"]["code"] == "not_found"
        assert (await api_get(node, "/v1/events/x/receipts", role="sales")).status_code == 403


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
        await eventually(  # counted after the publish returned
            lambda: node.node.metrics.escalations >= 1, message="the escalation is counted"
        )
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
