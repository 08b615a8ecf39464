"""Resume without loss: replay from an offset, then live, each event once, in order.

Every test runs on both backends (``start_node``): the in-process node on the
memory backend, and on a real Redis.
"""

from __future__ import annotations

import asyncio

from tests.support.node import NodeFactory
from tests.support.phones import phone, publish
from tests.support.timing import eventually


def epoch_start(offset: str) -> str:
    return offset.split(":", maxsplit=1)[0] + ":0-0"


async def test_resume_replays_after_the_offset_then_goes_live(start_node: NodeFactory) -> None:
    async with start_node() as node:
        sent = [await publish(node, ["team:north"], {"n": n}) for n in range(5)]
        resume_at = sent[1]["offsets"]["team:north"]
        async with phone(node, "alice", teams=("north",), subs={"team:north": resume_at}) as alice:
            state = alice.welcome["subs"]["team:north"]
            assert state == {"offset": sent[-1]["offsets"]["team:north"], "recovered": True}
            replayed = await alice.events(3)
            assert [e["data"]["n"] for e in replayed] == [2, 3, 4]
            live = await publish(node, ["team:north"], {"n": 5})
            (event,) = await alice.events(1)
            assert event["id"] == live["id"]


async def test_resume_while_publishing_loses_nothing_and_repeats_nothing(
    start_node: NodeFactory,
) -> None:
    async with start_node(replay_page_events=7) as node:
        first = await publish(node, ["team:north"], {"n": 0})
        for n in range(1, 40):
            await publish(node, ["team:north"], {"n": n})

        async def keep_publishing() -> None:
            for n in range(40, 80):
                await publish(node, ["team:north"], {"n": n})

        publisher = asyncio.create_task(keep_publishing())
        async with phone(
            node, "alice", teams=("north",), subs={"team:north": first["offsets"]["team:north"]}
        ) as alice:
            await publisher
            events = await alice.events(79)
            assert [e["data"]["n"] for e in events] == list(range(1, 80))
            ping = await alice.request({"type": "ping", "id": 1})
            assert ping["type"] == "pong"  # and no 80th event before it


async def test_subscribe_with_since_replays_after_subscribed(start_node: NodeFactory) -> None:
    async with start_node() as node:
        sent = [await publish(node, ["broadcast"], {"n": n}) for n in range(3)]
        async with phone(node, "alice") as alice:
            reply = await alice.request(
                {
                    "type": "subscribe",
                    "id": 1,
                    "channel": "broadcast",
                    "since": epoch_start(sent[0]["offsets"]["broadcast"]),
                }
            )
            assert reply["type"] == "subscribed" and reply["recovered"] is True
            assert reply["offset"] == sent[-1]["offsets"]["broadcast"]
            assert [e["data"]["n"] for e in await alice.events(3)] == [0, 1, 2]


async def test_offset_from_another_epoch_is_not_recovered(start_node: NodeFactory) -> None:
    async with start_node() as node:
        await publish(node, ["team:north"], {"n": 0})
        async with phone(
            node, "alice", teams=("north",), subs={"team:north": "gone:123-1"}
        ) as alice:
            state = alice.welcome["subs"]["team:north"]
            assert state["recovered"] is False
            assert state["offset"].endswith("-1") and not state["offset"].startswith("gone")
            live = await publish(node, ["team:north"], {"n": 1})
            (event,) = await alice.events(1)  # nothing replayed: the first frame is the live event
            assert event["id"] == live["id"]


async def test_offset_older_than_retained_history_is_not_recovered(start_node: NodeFactory) -> None:
    async with start_node(history_max_events=3) as node:
        sent = [await publish(node, ["team:north"], {"n": n}) for n in range(6)]
        async with phone(
            node, "alice", teams=("north",), subs={"team:north": sent[1]["offsets"]["team:north"]}
        ) as alice:
            assert alice.welcome["subs"]["team:north"] == {
                "offset": sent[-1]["offsets"]["team:north"],
                "recovered": False,
            }
        # The newest three are retained: resuming inside them works.
        async with phone(
            node, "alice", teams=("north",), subs={"team:north": sent[3]["offsets"]["team:north"]}
        ) as alice:
            assert alice.welcome["subs"]["team:north"]["recovered"] is True
            assert [e["data"]["n"] for e in await alice.events(2)] == [4, 5]


async def test_many_concurrent_first_subscriptions_all_receive(start_node: NodeFactory) -> None:
    async with start_node() as node:
        ready = asyncio.Event()
        got: list[str] = []

        async def one_phone(i: int) -> None:
            async with phone(
                node, f"u{i}", teams=("fresh",), subs={"team:fresh": None}, device=f"d{i}"
            ) as p:
                await ready.wait()
                got.append((await p.events(1))[0]["id"])

        phones = [asyncio.create_task(one_phone(i)) for i in range(200)]

        def all_connected() -> bool:
            for task in phones:
                if task.done():
                    task.result()  # a phone that failed fails the test
            return node.node.registry.session_count >= 200

        await eventually(all_connected, timeout=30, message="200 phones connected")
        ready.set()
        sent = await publish(node, ["team:fresh"])
        await asyncio.gather(*phones)
        assert got == [sent["id"]] * 200
