"""The outbox bounds: a phone that does not read is closed with 4008 (by bytes
or by messages), one that reads slowly gets a long replay at its own pace."""

from __future__ import annotations

import asyncio
import contextlib

from websockets.exceptions import ConnectionClosed

from fieldpush.backend.base import PublishRequest
from fieldpush.events.event import encode_body
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import Phone, api_get, phone, publish
from tests.support.scrape import value
from tests.support.timing import eventually


async def fill(node: RunningNode, channel: str, count: int, pad: int) -> list[str]:
    """Publish ``count`` events of about ``pad`` bytes straight into the node's
    backend (faster than HTTP; the same history and live feed); their ids."""
    ids = []
    for n in range(count):
        event_id = node.node.new_event_id()
        body = encode_body(event_id, "bulk", "normal", {"n": n, "pad": "x" * pad})
        await node.node.backend.publish(PublishRequest((channel,), event_id, "normal", body))
        ids.append(event_id)
    return ids


async def keep_talking(device: Phone) -> None:
    """Send a message every 0.1 s (an ack of no event: the server does not
    answer it) until the connection is closed."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await device.send({"type": "ack", "ids": ["no-such-event"]})
            await asyncio.sleep(0.1)


async def test_too_many_unsent_messages_close_with_4008_even_under_the_byte_bound() -> None:
    settings = node_settings(max_outbox_bytes=512 * 1024 * 1024, max_outbox_messages=20)
    subs = {"team:north": None}
    async with (
        running_node(settings) as node,
        phone(node, "stalled", teams=("north",), subs=subs) as stalled,
        phone(node, "healthy", teams=("north",), subs=subs) as healthy,
    ):
        stalled.ws.transport.pause_reading()
        sent: list[str] = []
        while node.node.metrics.closed[4008] == 0 and len(sent) < 5000:  # past kernel buffers
            sent += await fill(node, "team:north", 10, 20_000)
            received = await healthy.events(10)
            assert [e["id"] for e in received] == sent[-10:]
        assert node.node.metrics.closed[4008] == 1
        stalled.ws.transport.resume_reading()
        assert await stalled.closed_with() == 4008
        assert value((await api_get(node, "/metrics")).text, "fieldpush_outbox_closes_total") == 1


async def test_a_long_replay_to_a_slow_reader_is_paced_not_closed() -> None:
    settings = node_settings(max_outbox_bytes=256 * 1024, replay_page_events=1000)
    async with running_node(settings) as node:
        first = await publish(node, ["user:alice"], {"n": -1})
        sent = await fill(node, "user:alice", 300, 20_000)
        subs = {"user:alice": first["offsets"]["user:alice"]}
        async with phone(node, "alice", subs=subs) as alice:
            received = []
            while len(received) < len(sent):
                received += await alice.next_events()
                await asyncio.sleep(0.001)  # a slow phone: reads a frame, then works
            assert [e["id"] for e in received] == sent
            assert node.node.metrics.closed[4008] == 0
            pong = await alice.request({"type": "ping", "id": 1})
            assert pong["type"] == "pong"


async def test_a_phone_that_stops_reading_during_a_replay_is_closed() -> None:
    settings = node_settings(max_outbox_bytes=256 * 1024, heartbeat_s=0.5)
    async with running_node(settings) as node:
        first = await publish(node, ["user:alice"], {"n": -1})
        await fill(node, "user:alice", 1500, 40_000)  # 60 MB: more than kernel buffers hold
        subs = {"user:alice": first["offsets"]["user:alice"]}
        async with phone(node, "alice", subs=subs) as alice:
            alice.ws.transport.pause_reading()
            # Alive but not reading: it keeps talking, so the heartbeat (1011 for a
            # phone that says nothing) is not what closes it, however busy the machine.
            talking = asyncio.create_task(keep_talking(alice))
            try:
                await eventually(
                    lambda: node.node.metrics.closed[4008] or node.node.metrics.closed[1011],
                    timeout=10,
                    message="the phone that stopped reading is closed",
                )
            finally:
                talking.cancel()
                await asyncio.gather(talking, return_exceptions=True)
            alice.ws.transport.resume_reading()
            assert await alice.closed_with() == 4008
