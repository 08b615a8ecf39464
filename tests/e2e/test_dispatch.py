"""Black-box, several ``fieldpush serve`` processes on one real redis-server:
acks and receipts across nodes, escalation exactly once when the publishing
node was killed, presence expiry after SIGKILL, the per-user cap across nodes,
a slow consumer closed with 4008 while the others carry on, and resuming
without loss.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.pubsub import RedisAddress
from tests.support.cli import ServeProcess
from tests.support.cluster import DISPATCHER, start_node, token
from tests.support.phones import connect_phone, next_of_kind
from tests.support.scrape import value
from tests.support.timing import eventually, scaled

pytestmark = pytest.mark.e2e

FAST = {
    "escalation_interval_s": "0.05",
    "escalation_lease_s": "1",
    "presence_ttl_s": "1",
}


async def publish_critical(
    http: httpx.AsyncClient, node: ServeProcess, channels: list[str], **extra: Any
) -> dict[str, Any]:
    body = {"channels": channels, "kind": "work_order.urgent", "priority": "critical", "data": {}}
    reply = await http.post(node.url + "/v1/publish", json={**body, **extra}, headers=DISPATCHER)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def test_ack_on_one_node_ends_pending_everywhere_and_receipts_follow(
    redis_url: str,
) -> None:
    node_a, node_b = start_node(redis_url, "node-a"), start_node(redis_url, "node-b")
    try:
        async with (
            httpx.AsyncClient(timeout=scaled(10)) as http,
            connect_phone(
                node_b.ws_url, token("disp", "dispatcher"), subs={"dispatch": None}
            ) as console,
        ):
            async with connect_phone(node_a.ws_url, token("alice"), device="a-phone") as alice:
                sent = await publish_critical(http, node_b, ["user:alice"])
                (event,) = await alice.events(1)
                assert event["id"] == sent["id"]
            (delivered,) = (await next_of_kind(console, "receipt", timeout=10))["data"]["receipts"]
            assert delivered["device"] == "a-phone"
            # Not acked: the phone gets it again on the other node, and acks there.
            async with connect_phone(node_b.ws_url, token("alice"), device="a-tablet") as again:
                (event,) = await again.events(1)
                assert event["id"] == sent["id"]
                await again.send({"type": "ack", "ids": [sent["id"]]})
                (acked,) = (await next_of_kind(console, "receipt", timeout=10))["data"]["receipts"]
                assert acked["device"] == "a-tablet" and acked["acked_at"]
            async with connect_phone(node_a.ws_url, token("alice")) as after:
                pong = await after.request({"type": "ping", "id": 1})
                assert pong["type"] == "pong"  # nothing pending any more
            reply = await http.get(
                f"{node_a.url}/v1/events/{sent['id']}/receipts", headers=DISPATCHER
            )
            (receipt,) = reply.json()["recipients"]
            assert receipt["device"] == "a-tablet"
            assert receipt["delivered_at"] == delivered["delivered_at"]
            assert receipt["acked_at"] == acked["acked_at"]
    finally:
        assert node_a.stop() == 0, node_a.output
        assert node_b.stop() == 0, node_b.output


async def test_escalation_exactly_once_after_the_publishing_node_was_killed(
    redis_url: str,
) -> None:
    publisher = start_node(redis_url, "node-p", **FAST)
    survivors = [start_node(redis_url, f"node-{n}", **FAST) for n in "ab"]
    try:
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            sent = await publish_critical(
                http, publisher, ["user:bob", "user:carol"], ack_deadline_s=1.5
            )
            publisher.kill()  # SIGKILL: the node that accepted the publish is gone
            async with connect_phone(survivors[0].ws_url, token("carol")) as carol:
                (event,) = await carol.events(1)
                await carol.send({"type": "ack", "ids": [event["id"]]})
                await carol.request({"type": "ping", "id": 1})
            async with connect_phone(
                survivors[1].ws_url, token("disp", "dispatcher"), subs={"dispatch": None}
            ) as console:
                escalation = await next_of_kind(console, "escalation", timeout=10)
            assert escalation["data"] == {
                "event": sent["id"],
                "kind": "work_order.urgent",
                "users": ["bob"],
            }

            # Once the deadline is gone from Redis no node can claim the event again;
            # a claim in flight could only end in a duplicate publish (same key).
            redis = RedisClient(RedisAddress.from_url(redis_url), timeout_s=scaled(5))
            try:
                await eventually(
                    lambda: _is_none(redis.execute(b"ZSCORE", b"fp:deadlines", sent["id"])),
                    timeout=10,
                    message="the deadline is gone from Redis",
                )
            finally:
                await redis.close()
            body = {"subs": {"dispatch": epoch_start(escalation["offset"])}}
            reply = await http.post(survivors[0].url + "/v1/poll", json=body, headers=DISPATCHER)
            found = [e for e in reply.json()["events"] if e["kind"] == "escalation"]
            assert [e["data"]["event"] for e in found] == [sent["id"]]
            metrics = [(await http.get(n.url + "/metrics")).text for n in survivors]
            assert sum(escalations(text) for text in metrics) == 1
    finally:
        for node in survivors:
            assert node.stop() == 0, node.output


def epoch_start(offset: str) -> str:
    return offset.split(":", maxsplit=1)[0] + ":0-0"


def escalations(metrics_text: str) -> int:
    return int(value(metrics_text, "fieldpush_escalations_total"))


async def test_presence_of_a_killed_node_expires(redis_url: str) -> None:
    doomed, watcher = start_node(redis_url, "node-a", **FAST), start_node(redis_url, "node-b")
    try:
        async with httpx.AsyncClient(timeout=scaled(10)) as http:

            async def alice() -> dict[str, Any]:
                reply = await http.get(watcher.url + "/v1/presence/users/alice", headers=DISPATCHER)
                assert reply.status_code == 200, reply.text
                body: dict[str, Any] = reply.json()
                return body

            async with connect_phone(doomed.ws_url, token("alice"), device="a1"):
                online = await eventually(
                    alice, until=lambda b: b["online"], timeout=10, message="alice online"
                )
                assert [(d["device"], d["node"]) for d in online["devices"]] == [("a1", "node-a")]
                doomed.kill()
                # The entry stays until node-a's heartbeat key expires (presence_ttl_s = 1).
                gone = await eventually(
                    alice, until=lambda b: not b["online"], message="alice's entry expired"
                )
                assert gone["devices"] == []
    finally:
        assert watcher.stop() == 0, watcher.output


async def _is_none(reply: Any) -> bool:
    return await reply is None


async def test_per_user_cap_closes_the_oldest_connection_on_another_node(
    redis_url: str,
) -> None:
    cap = {"max_connections_per_user": "1"}
    node_a, node_b = start_node(redis_url, "node-a", **cap), start_node(redis_url, "node-b", **cap)
    try:
        async with httpx.AsyncClient(timeout=scaled(10)) as http:

            async def online() -> bool:
                reply = await http.get(node_b.url + "/v1/presence/users/alice", headers=DISPATCHER)
                return bool(reply.json()["online"])

            async with connect_phone(node_a.ws_url, token("alice"), device="old") as old:
                await eventually(online, timeout=10, message="alice online")
                async with connect_phone(node_b.ws_url, token("alice"), device="new") as new:
                    assert await old.closed_with() == 4029
                    assert (await new.request({"type": "ping", "id": 1}))["type"] == "pong"
    finally:
        assert node_a.stop() == 0, node_a.output
        assert node_b.stop() == 0, node_b.output


async def closed_4008(http: httpx.AsyncClient, node: ServeProcess) -> bool:
    metrics = (await http.get(node.url + "/metrics")).text
    return 'fieldpush_connections_closed_total{code="4008"} 1' in metrics


async def test_a_slow_consumer_is_closed_and_resumes_without_loss_while_others_carry_on(
    redis_url: str,
) -> None:
    bound = {"max_outbox_bytes": str(256 * 1024)}
    node_a, node_b = start_node(redis_url, "node-a", **bound), start_node(redis_url, "node-b")
    north = token("p", teams=("north",))
    subs: dict[str, str | None] = {"team:north": None}
    try:
        async with (
            httpx.AsyncClient(timeout=scaled(10)) as http,
            connect_phone(node_a.ws_url, north, subs=subs, device="stalled") as stalled,
            connect_phone(node_a.ws_url, north, subs=subs, device="same-node") as same_node,
            connect_phone(node_b.ws_url, north, subs=subs, device="other-node") as other_node,
        ):
            start = stalled.welcome["subs"]["team:north"]["offset"]
            stalled.ws.transport.pause_reading()
            sent: list[str] = []
            body = {"channels": ["team:north"], "kind": "bulk", "data": {"pad": "x" * 20_000}}
            publish_url = node_b.url + "/v1/publish"
            while not await closed_4008(http, node_a):
                assert len(sent) < 2000, "the stalled phone was never closed"
                for _ in range(10):
                    reply = await http.post(publish_url, json=body, headers=DISPATCHER)
                    assert reply.status_code == 201, reply.text
                    sent.append(reply.json()["id"])
                for healthy in (same_node, other_node):  # every event, in order, in time
                    assert [e["id"] for e in await healthy.events(10)] == sent[-10:]
            stalled.ws.transport.resume_reading()
            assert await stalled.closed_with() == 4008
            async with connect_phone(
                node_b.ws_url, north, subs={"team:north": start}, device="stalled"
            ) as resumed:
                assert resumed.welcome["subs"]["team:north"]["recovered"] is True
                assert [e["id"] for e in await resumed.events(len(sent))] == sent
    finally:
        assert node_a.stop() == 0, node_a.output
        assert node_b.stop() == 0, node_b.output
