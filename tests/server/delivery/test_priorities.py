"""Priorities on the socket: low events wait for the next non-low one (or the
low interval), normal ones for the coalescing window; high and critical go at once.

In-process nodes on real sockets, on each backend (``start_node``).
"""

from __future__ import annotations

from tests.support.node import NodeFactory
from tests.support.phones import phone, pong_next, publish

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
