"""Reassignment and urgency are pushed (issue 13, item 2), on each backend:
a record that enters a scope reaches it at once with the whole record
(critical when the work order is urgent), the scope it left is told it was
removed, and an urgent work order made through sync is tracked and escalated
under the one definition of "urgent work order" (``ack_deadlines_s``
``work_order.urgent``), like a published one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import next_of_kind, phone
from tests.sync.test_sync import Api, mutation

URGENT_DEADLINE_S = 120


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node(ack_deadlines_s={"work_order.urgent": URGENT_DEADLINE_S}) as running:
        yield running


async def urgent_work_order(node: RunningNode, assignee: str, team: str = "north") -> None:
    crm = Api(node, "crm", "service")
    await crm.put("work_order", "w1", device="d1", assignee=assignee, team=team, urgency="urgent")


async def test_a_reassigned_urgent_work_order_reaches_the_new_engineer_whole_and_critical(
    node: RunningNode,
) -> None:
    await urgent_work_order(node, "eng1")
    dispatcher = Api(node, "disp", "dispatcher")
    async with (
        phone(node, "eng1", role="after_sales", device="eng1-phone") as eng1,
        phone(node, "eng2", role="after_sales", device="eng2-phone") as eng2,
        phone(
            node, "boss", role="supervisor", teams=("north",), subs={"records:north": None}
        ) as boss,
    ):
        (created,) = await eng1.events(1)  # pending since the CRM made it: critical
        assert created["data"]["entered"] is True and created["priority"] == "critical"
        await eng1.send({"type": "ack", "ids": [created["id"]]})
        (result,) = await dispatcher.push(mutation("r1", "w1", "work_order", assignee="eng2"))
        assert result["status"] == "applied"
        (entered,) = await eng2.events(1)
        assert (entered["kind"], entered["priority"]) == ("record.changed", "critical")
        assert entered["data"]["entered"] is True
        assert entered["data"]["fields"] == {
            "device": "d1",
            "assignee": "eng2",
            "team": "north",
            "urgency": "urgent",
        }
        (left,) = await eng1.events(1)
        assert (left["priority"], left["data"]) == (
            "high",
            {
                "type": "work_order",
                "rid": "w1",
                "removed": True,
                "origin": {"user": "disp", "device": "http"},
            },
        )
        pong = await boss.request({"type": "ping", "id": 1})
        assert pong["type"] == "pong"  # the team did not change: nothing entered or left it
        receipts = await dispatcher.call("GET", f"/v1/events/{entered['id']}/receipts")
        assert receipts.status_code == 200, receipts.text
        tracked = receipts.json()
        assert tracked["kind"] == "work_order.urgent"
        assert tracked["deadline_at"] - tracked["published_at"] == URGENT_DEADLINE_S * 1000
    pulled = await Api(node, "eng2", "after_sales").pull_all()
    assert pulled[0][("work_order", "w1")]["assignee"] == "eng2"  # and the pull agrees


async def test_a_team_change_tells_both_teams(node: RunningNode) -> None:
    await urgent_work_order(node, "eng1")
    async with (
        phone(
            node, "north", role="supervisor", teams=("north",), subs={"records:north": None}
        ) as north,
        phone(
            node, "south", role="supervisor", teams=("south",), subs={"records:south": None}
        ) as south,
    ):
        dispatcher = Api(node, "disp", "dispatcher")
        (result,) = await dispatcher.push(mutation("t1", "w1", "work_order", team="south"))
        assert result["status"] == "applied"
        (gone,) = await north.events(1)
        assert gone["data"]["removed"] is True and "fields" not in gone["data"]
        (came,) = await south.events(1)
        assert came["data"]["entered"] is True and came["data"]["fields"]["team"] == "south"


async def test_a_reassignment_to_an_id_that_names_no_channel_only_tells_the_old_scope(
    node: RunningNode,
) -> None:
    await urgent_work_order(node, "eng1")
    async with phone(node, "eng1", role="after_sales") as eng1:
        (created,) = await eng1.events(1)
        await eng1.send({"type": "ack", "ids": [created["id"]]})
        dispatcher = Api(node, "disp", "dispatcher")
        (result,) = await dispatcher.push(mutation("x1", "w1", "work_order", assignee="a b:c"))
        assert result["status"] == "applied"
        (left,) = await eng1.events(1)
        assert left["data"]["removed"] is True
        assert (await eng1.request({"type": "ping", "id": 1}))["type"] == "pong"


async def test_an_urgent_work_order_made_through_sync_escalates_like_a_published_one(
    start_node: NodeFactory,
) -> None:
    settings = {"escalation_interval_s": 0.05, "ack_deadlines_s": {"work_order.urgent": 0.5}}
    async with (
        start_node(**settings) as node,
        phone(node, "disp", role="dispatcher", subs={"dispatch": None}) as console,
        phone(node, "eng1", role="after_sales") as eng1,
    ):
        dispatcher = Api(node, "disp", "dispatcher")
        fields = {"device": "d9", "assignee": "eng1", "team": "north", "urgency": "urgent"}
        (result,) = await dispatcher.push(mutation("c1", "w9", "work_order", **fields))
        assert result["status"] == "applied"
        (event,) = await eng1.events(1)  # eng1 does not ack
        assert event["priority"] == "critical" and event["data"]["entered"] is True
        escalation = await next_of_kind(console, "escalation")
    assert escalation["data"] == {
        "event": event["id"],
        "kind": "work_order.urgent",
        "users": ["eng1"],
    }
