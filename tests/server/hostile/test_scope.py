"""Reads beyond the caller's scope (issue 11, defects 10 and 11): presence and
``records:<team>`` events only within what the caller may read; every record
the caller may not see answers ``not_found``, whether or not it exists."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import next_of_kind, phone, pong_next, wait_for_presence
from tests.support.timing import scaled


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


async def call(
    node: RunningNode, user: str, role: str, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {node.token(user, role, ('north',))}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.request(method, path, headers=headers, **kwargs)


async def put(node: RunningNode, record_type: str, rid: str, **fields: Any) -> None:
    reply = await call(
        node, "crm", "service", "PUT", f"/v1/records/{record_type}/{rid}", json={"fields": fields}
    )
    assert reply.status_code == 200, reply.text


async def test_a_supervisor_sees_only_the_presence_of_own_teams(node: RunningNode) -> None:
    async with (
        phone(node, "alice", teams=("north",), subs={"team:north": None}),
        phone(node, "sam", teams=("south",), subs={"team:south": None}),
    ):
        await wait_for_presence(node, "team:south", {"sam"})
        await wait_for_presence(node, "team:north", {"alice"})
        boss = ("boss", "supervisor")
        for channel in ("team:south", "broadcast", "dispatch", "user:sam", "records:south"):
            reply = await call(node, *boss, "GET", f"/v1/presence?channel={channel}")
            assert reply.status_code == 403, (channel, reply.text)
        north = await call(node, *boss, "GET", "/v1/presence?channel=team:north")
        assert [u["user"] for u in north.json()["users"]] == ["alice"]
        sam = (await call(node, *boss, "GET", "/v1/presence/users/sam")).json()
        assert sam == {"user": "sam", "online": False, "last_seen": None, "devices": []}
        alice = (await call(node, *boss, "GET", "/v1/presence/users/alice")).json()
        assert alice["online"] is True
        dispatcher = (await call(node, "d", "dispatcher", "GET", "/v1/presence/users/sam")).json()
        assert dispatcher["online"] is True


async def test_records_events_reach_only_those_who_may_read_them(node: RunningNode) -> None:
    """A dispatcher on ``records:north`` gets work-order changes (it may read
    work orders) but no customer ``stage`` (the schema gives it no customer
    read), live and in a replay; the team's supervisor gets both."""
    await put(node, "customer", "c1", name="ACME", owner="alice", team="north")
    await put(node, "work_order", "w1", device="d1", assignee="eve", team="north", fault="leak")
    subs: dict[str, str | None] = {"records:north": None}
    async with (
        phone(node, "boss", role="supervisor", teams=("north",), subs=subs) as boss,
        phone(node, "disp", role="dispatcher", subs=subs) as dispatcher,
    ):
        before = boss.welcome["subs"]["records:north"]["offset"]
        await put(node, "customer", "c1", stage="signed")
        await put(node, "work_order", "w1", status="accepted")
        for reader, expected in ((boss, ["customer", "work_order"]), (dispatcher, ["work_order"])):
            got = [event["data"]["type"] for event in await reader.events(len(expected))]
            assert got == expected
            await pong_next(reader)
    async with phone(node, "disp", role="dispatcher", subs={"records:north": before}) as late:
        event = await next_of_kind(late, "record.changed")
        assert event["data"]["type"] == "work_order"
        await pong_next(late)


async def test_ids_of_others_and_unused_ids_answer_alike(node: RunningNode) -> None:
    """Defect 11: an edit of another user's record and of an unused id, a create
    without its required fields and a create for another owner all answer
    ``not_found`` with the same result; nothing is stored."""
    await put(node, "customer", "c-sam", name="Sud SA", owner="sam", team="south")
    now = time.time_ns() // 1_000_000
    cases = [
        ("c-sam", {"stage": "lost"}),
        ("c-unused", {"stage": "lost"}),
        ("c-sam", {"name": "Mine", "owner": "bob"}),
        ("c-unused", {"name": "Mine", "owner": "bob"}),
        ("c-sam", None),
        ("c-unused", None),
    ]
    async with phone(node, "alice", teams=("north",)) as alice:
        for n, (rid, fields) in enumerate(cases):
            item = {
                "mid": f"m{n}",
                "type": "customer",
                "rid": rid,
                "fields": fields,
                "hlc": [now, n],
            }
            reply = await alice.request({"type": "mutate", "id": n, "mutations": [item]})
            (result,) = reply["results"]
            assert result == {"mid": f"m{n}", "status": "rejected", "reason": "not_found"}, (
                rid,
                result,
            )
    pulled = await call(node, "root", "admin", "POST", "/v1/sync/pull", json={})
    assert {c["rid"] for c in pulled.json()["changes"]} == {"c-sam"}
