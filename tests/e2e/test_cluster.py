"""Black-box: two ``fieldpush serve`` processes on one real redis-server.

The tests start everything as subprocesses on free loopback ports and talk to
it only through the wire protocol, as phones and dispatchers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpush_client import EventMsg, PushClient, backoff_delays
from tests.support.cli import ServeProcess
from tests.support.cluster import DISPATCHER, start_node, token
from tests.support.phones import Phone, connect_phone
from tests.support.redis_server import RedisServer
from tests.support.timing import eventually, scaled

pytestmark = pytest.mark.e2e


async def publish(http: httpx.AsyncClient, url: str, channel: str, n: int) -> httpx.Response:
    body = {"channels": [channel], "kind": "e2e", "data": {"n": n}}
    return await http.post(url + "/v1/publish", json=body, headers=DISPATCHER)


async def test_events_cross_nodes_and_resume_on_another_node(
    cluster: tuple[ServeProcess, ServeProcess],
) -> None:
    node_a, node_b = cluster
    alice, bob = token("alice", teams=("north",)), token("bob", teams=("north",))
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        async with (
            connect_phone(node_a.ws_url, alice, subs={"team:north": None}) as on_a,
            connect_phone(node_b.ws_url, bob, subs={"team:north": None}) as on_b,
        ):
            assert on_a.welcome["node"] == "node-a" and on_b.welcome["node"] == "node-b"
            sent = [
                (await publish(http, url, "team:north", n)).json()
                for n, url in enumerate([node_a.url, node_b.url] * 3)
            ]
            for phone in (on_a, on_b):
                assert [e["id"] for e in await phone.events(6)] == [s["id"] for s in sent]
            last_seen = sent[-1]["offsets"]["team:north"]
        # alice is offline; events arrive through node B; she comes back on node B.
        missed = [(await publish(http, node_b.url, "team:north", n)).json() for n in range(10, 15)]
        async with connect_phone(node_b.ws_url, alice, subs={"team:north": last_seen}) as back:
            assert back.welcome["subs"]["team:north"]["recovered"] is True
            assert [e["id"] for e in await back.events(5)] == [m["id"] for m in missed]


async def collect(phone: Phone, into: list[dict[str, Any]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            into.extend(await phone.next_events(timeout=0.5))
        except TimeoutError:
            continue


async def test_redis_restart_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Kill redis-server mid-stream and restart it: a phone that stayed connected
    gets every event that got a 201 exactly once, in order; meanwhile publish
    answers 503 and /readyz reports not ready."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    node_a, node_b = start_node(redis.url, "node-a"), start_node(redis.url, "node-b")
    alice = token("alice", teams=("north",))
    try:
        async with (
            httpx.AsyncClient(timeout=scaled(10)) as http,
            connect_phone(node_a.ws_url, alice, subs={"team:north": None}) as phone,
        ):
            received: list[dict[str, Any]] = []
            stop = asyncio.Event()
            collector = asyncio.create_task(collect(phone, received, stop))
            accepted: list[str] = []
            refused = 0
            killed_at = restarted_at = 0.0
            started = time.monotonic()
            for n in range(120):
                if n == 40:
                    redis.kill()
                    killed_at = time.monotonic()
                    ready = await http.get(node_b.url + "/readyz")
                    assert ready.status_code == 503 and ready.json()["ready"] is False
                if n == 80:
                    redis.restart()
                    restarted_at = time.monotonic()
                reply = await publish(http, node_b.url if n % 2 else node_a.url, "team:north", n)
                if reply.status_code == 201:
                    accepted.append(reply.json()["id"])
                else:
                    assert reply.status_code == 503, reply.text
                    assert reply.json()["error"]["code"] == "unavailable"
                    refused += 1
                await asyncio.sleep(0.01)
            print(f"published for {time.monotonic() - started:.1f} s, {refused} refused")
            assert refused >= 30, "publishes during the outage must be refused, not accepted"
            assert len(accepted) >= 80
            ids = set(accepted)
            with contextlib.suppress(AssertionError):  # the assertions below say what is missing
                await eventually(
                    lambda: ids <= {e["id"] for e in received},
                    timeout=20,
                    message="every accepted event arrived",
                )
            stop.set()
            await collector
            got = [e["id"] for e in received]
            assert len(got) == len(set(got)), "an event was delivered twice"
            assert ids <= set(got), f"{len(ids - set(got))} acknowledged events never arrived"
            seqs = [int(e["offset"].rsplit("-", 1)[1]) for e in received]
            assert seqs == sorted(seqs), "events out of order"
            assert phone.ws.close_code is None, "the phone was disconnected"
            assert (await http.get(node_a.url + "/readyz")).status_code == 200
            assert restarted_at > killed_at
            for node in (node_a, node_b):  # logs never carry tokens
                assert alice.split(".")[2] not in node.output
                assert DISPATCHER["Authorization"].split(".")[2] not in node.output
    finally:
        assert node_a.stop() == 0, node_a.output
        assert node_b.stop() == 0, node_b.output
        redis.stop()


async def test_draining_a_node_moves_its_phones_without_loss_or_duplicates(redis_url: str) -> None:
    """SIGTERM on node A: its phones get goaway, move to node B at random
    points of the window, and hand the application every acknowledged event
    exactly once, in order; node A exits cleanly."""
    window = {"goaway_min_ms": "50", "goaway_max_ms": "400", "drain_deadline_s": "10"}
    node_a, node_b = start_node(redis_url, "node-a", **window), start_node(redis_url, "node-b")
    clients = [
        PushClient(
            [node_a.ws_url, node_b.ws_url],
            token=token(f"phone{i}", teams=("north",)),
            device=f"device-{i}",
            subscriptions=["team:north"],
            backoff=lambda: backoff_delays(base_s=0.02, cap_s=0.2),
        )
        for i in range(5)
    ]
    received: list[list[EventMsg]] = [[] for _ in clients]

    async def consume(client: PushClient, into: list[EventMsg]) -> None:
        async for event in client.events():
            into.append(event)

    try:
        for client in clients:
            client.start()
            assert (await client.wait_connected(scaled(10))).node == "node-a"
        consumers = [
            asyncio.create_task(consume(c, r)) for c, r in zip(clients, received, strict=True)
        ]
        accepted: list[str] = []
        drain: asyncio.Task[int | None] | None = None
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            for n in range(60):
                if n == 15:
                    drain = asyncio.create_task(asyncio.to_thread(node_a.stop))
                reply = await publish(http, node_b.url, "team:north", n)
                assert reply.status_code == 201, reply.text
                accepted.append(reply.json()["id"])
                await asyncio.sleep(0.02)
        assert drain is not None
        assert await drain == 0, node_a.output
        with contextlib.suppress(AssertionError):  # the assertions below say what is missing
            await eventually(
                lambda: all(len(r) >= len(accepted) for r in received),
                timeout=15,
                message="every phone got every accepted event",
            )
        for events in received:
            ids = [e.id for e in events]
            assert ids == accepted, "every acknowledged event, once, in order"
        assert all(c.session is not None and c.session.node == "node-b" for c in clients)
        # They left on the goaway (closing normally), not when the node closed them (1012).
        assert node_a.output.count("code 1000") == len(clients), node_a.output
        assert "code 1012" not in node_a.output
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    finally:
        for client in clients:
            await client.close()
        node_a.stop()
        assert node_b.stop() == 0, node_b.output
