"""Clocks (issue 13, item 1; docs/sync.md "Clock guarantees"), through a real
node on both backends, over the socket's ``mutate`` and ``POST /v1/sync/push``:

- a stamp from the future, refused or accepted, never moves the server's
  clock (which stamps the CRM's writes) ahead of real time, whatever the
  number of requests: an honest edit made after a CRM write wins;
- hostile stamps (out of range, not integers) are refused as ``validation``,
  nothing is stored, and other connections carry on;
- every device's clock offset is visible: a histogram and a counter in
  ``/metrics``, ``skew_ms`` in the device registry (written when it moved by
  more than a second, bounded for absurd clocks).

The property over any hostile stamps is in tests/sync/test_clock_property.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from fieldpush.sync.skew import SKEW_BOUND_MS
from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import api_get, phone, pong_next
from tests.support.scrape import value
from tests.support.timing import eventually
from tests.sync.test_sync import Api, mutation, now_ms

YEAR_MS = 365 * 86400 * 1000


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    """A node on each backend."""
    async with start_node() as running:
        yield running


async def mutate(
    node: RunningNode, transport: str, user: str, device: str, *mutations: dict[str, Any]
) -> list[dict[str, Any]]:
    """``mutations`` from ``user``'s ``device``, over ``transport`` (socket or http)."""
    if transport == "http":
        return await Api(node, user, "sales", ("north",)).push(*mutations, device=device)
    async with phone(node, user, teams=("north",), device=device) as sender:
        reply = await sender.request({"type": "mutate", "id": 1, "mutations": list(mutations)})
    assert reply["type"] == "mutated", reply
    results: list[dict[str, Any]] = reply["results"]
    return results


async def crm_write_then_honest_edit(node: RunningNode, rid: str) -> dict[str, Any]:
    """The CRM sets ``stage`` of ``rid``; once real time has moved past that
    write, alice's honest phone (its clock right) sets it: its result."""
    crm = Api(node, "crm", "service")
    await crm.put("customer", rid, stage="lost")
    written = now_ms()
    await eventually(lambda: now_ms() > written, message="a millisecond passed")
    (result,) = await Api(node, "alice", "sales", ("north",)).push(
        mutation(f"honest-{rid}", rid, hlc=[now_ms(), 0], stage="signed"), device="honest"
    )
    return result


async def seed(node: RunningNode, *rids: str, owner: str = "alice") -> None:
    crm = Api(node, "crm", "service")
    for rid in rids:
        await crm.put("customer", rid, name="ACME", owner=owner, team="north", stage="lead")


@pytest.mark.parametrize("transport", ["socket", "http"])
async def test_a_refused_stamp_from_the_future_does_not_outdate_honest_edits(
    node: RunningNode, transport: str
) -> None:
    await seed(node, "c-bob", owner="bob")
    await seed(node, "c-alice")
    year_ahead = now_ms() + YEAR_MS
    (refused,) = await mutate(
        node,
        transport,
        "mallory",
        "liar",
        mutation("m1", "c-bob", hlc=[year_ahead, 0], stage="lost"),
    )
    assert (refused["status"], refused["reason"]) == ("rejected", "not_found")
    result = await crm_write_then_honest_edit(node, "c-alice")
    assert result["status"] == "applied", result
    assert node.node.sync.clock.now().wall_ms <= now_ms()


@pytest.mark.parametrize("transport", ["socket", "http"])
async def test_no_number_of_accepted_stamps_pushes_the_server_clock_ahead(
    node: RunningNode, transport: str
) -> None:
    await seed(node, "c-alice", "c-mine")
    before = now_ms()
    ahead = [before + 299_000, before + YEAR_MS, 2**63 - 1]  # within the old skew, and beyond
    for request in range(30):
        stamps = [[ahead[i % 3], request * 10 + i] for i in range(10)]
        results = await mutate(
            node,
            transport,
            "alice",
            "fast-clock",
            *(
                mutation(f"m{request}-{i}", "c-mine", hlc=stamp, stage="negotiation")
                for i, stamp in enumerate(stamps)
            ),
        )
        assert node.node.sync.clock.now().wall_ms <= now_ms()
        assert {r["status"] for r in results} == {"applied"}, results
    result = await crm_write_then_honest_edit(node, "c-alice")
    assert result["status"] == "applied", result
    # The liar's own record: its clamped stamps are older than the honest edit.
    result = await crm_write_then_honest_edit(node, "c-mine")
    assert result["status"] == "applied", result


async def test_equal_wall_clocks_with_huge_counters_still_lose_to_a_later_edit(
    node: RunningNode,
) -> None:
    await seed(node, "c-alice")
    (first,) = await mutate(
        node, "http", "alice", "counter", mutation("m1", "c-alice", hlc=[now_ms(), 2**63 - 1])
    )
    assert first["status"] == "applied"
    result = await crm_write_then_honest_edit(node, "c-alice")
    assert result["status"] == "applied", result


HOSTILE_HLC: list[Any] = [
    [-1, 0],
    [0, -1],
    [2**63, 0],
    [0, 2**63],
    [10**30, 0],
    [1.5, 0],
    ["1", 0],
    [True, 0],
    [None, 0],
    [1],
    [1, 2, 3],
    {"wall": 1},
    "1",
]


@pytest.mark.parametrize("transport", ["socket", "http"])
async def test_hostile_stamps_are_refused_and_store_nothing(
    node: RunningNode, transport: str
) -> None:
    await seed(node, "c-alice")
    alice = Api(node, "alice", "sales", ("north",))
    _, cursor = await alice.pull_all()
    async with phone(node, "bob", teams=("north",), device="bystander") as bystander:
        for n, hlc in enumerate(HOSTILE_HLC):
            item = {**mutation(f"h{n}", "c-alice", stage="lost"), "hlc": hlc}
            (result,) = await mutate(node, transport, "alice", "hostile", item)
            assert (result["status"], result["reason"]) == ("rejected", "validation"), hlc
        await pong_next(bystander)
    page = await alice.pull(cursor=cursor)
    assert page["changes"] == []
    assert node.node.sync.clock.now().wall_ms <= now_ms()


async def devices_of(node: RunningNode, user: str) -> dict[str, dict[str, Any]]:
    reply = await api_get(node, f"/v1/admin/users/{user}/devices", role="admin")
    assert reply.status_code == 200, reply.text
    return {d["device"]: d for d in reply.json()}


async def test_each_devices_clock_offset_is_in_the_registry(node: RunningNode) -> None:
    await seed(node, "c-alice")
    async with phone(node, "alice", teams=("north",), device="a-phone") as alice:
        assert (await devices_of(node, "alice"))["a-phone"]["skew_ms"] is None

        async def send(mid: str, offset_ms: int, rid: str = "c-alice") -> int:
            """A mutation stamped ``offset_ms`` ahead; the offset bounds as measured."""
            low = now_ms()
            stamp = [low + offset_ms, 0]
            reply = await alice.request(
                {"type": "mutate", "id": 1, "mutations": [mutation(mid, rid, hlc=stamp)]}
            )
            assert reply["type"] == "mutated", reply
            return low

        sent = await send("m1", 60_000)
        skew = (await devices_of(node, "alice"))["a-phone"]["skew_ms"]
        assert sent + 60_000 - now_ms() <= skew <= 60_000
        await send("m2", 60_000 + 300, "nowhere")  # refused, but the clock is the device's
        assert (await devices_of(node, "alice"))["a-phone"]["skew_ms"] == skew  # within 1 s
        await send("m3", -5_000)  # behind (or offline): moved by more than 1 s
        behind = (await devices_of(node, "alice"))["a-phone"]["skew_ms"]
        assert -5_000 - 1_000 <= behind <= -5_000
        reply = await alice.request(
            {
                "type": "mutate",
                "id": 2,
                "mutations": [mutation("m4", "c-alice", hlc=[2**63 - 1, 0])],
            }
        )
        assert reply["results"][0]["status"] == "applied"
        absurd = await devices_of(node, "alice")
        assert absurd["a-phone"]["skew_ms"] == SKEW_BOUND_MS
    # A device that never said hello (HTTP only) gets no registry entry.
    await Api(node, "alice", "sales", ("north",)).push(mutation("m5", "c-alice"), device="web")
    assert "web" not in await devices_of(node, "alice")


async def test_clock_offsets_are_metrics_without_a_device_label(node: RunningNode) -> None:
    await seed(node, "c-alice")
    alice = Api(node, "alice", "sales", ("north",))
    now = now_ms()
    await alice.push(
        mutation("m1", "c-alice", hlc=[now + 2 * 300_000, 0]),  # beyond sync_max_skew_s
        mutation("m2", "c-alice", hlc=[now + 1_000, 0]),  # a little ahead: not counted
        mutation("m3", "nowhere", hlc=[now - 3_600_000, 0]),  # judged, refused: observed
        device="fast",
    )
    reply = await api_get(node, "/metrics")
    text = reply.text
    assert value(text, "fieldpush_sync_clock_skewed_total") == 1
    assert value(text, "fieldpush_sync_clock_offset_seconds_count") == 3
    assert value(text, "fieldpush_sync_clock_offset_seconds_bucket", le="-300.0") == 1
    assert value(text, "fieldpush_sync_clock_offset_seconds_bucket", le="300.0") == 2
    assert "fast" not in text
