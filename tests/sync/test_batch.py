"""The batch sync class through a real node on both backends (issue 14, item 4;
docs/sync.md, "Batch sync class"): batch data (the device's ``debug_log``, the
``chat_message`` type) is neither pushed nor pulled with the core data; a pull
that asks for it (``classes``) gets it; its cursors are its own; hostile
``classes`` are refused and the connection carries on."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.node import RunningNode
from tests.support.phones import phone
from tests.sync.test_sync import Api, mutation, node

__all__ = ["node"]


async def seed(crm: Api) -> None:
    await crm.put(
        "device", "d-1", serial="12345678", owner="alice", team="north", debug_log=["boot"]
    )
    await crm.put(
        "chat_message", "ch-1", owner="alice", team="north", room="r-1", body="pump is leaking"
    )


async def test_a_core_pull_leaves_batch_data_out_and_a_batch_pull_gets_it(
    node: RunningNode,
) -> None:
    crm = Api(node, "crm", "service")
    await seed(crm)
    alice = Api(node, "alice", "sales", ("north",))
    core, core_cursor = await alice.pull_all()
    assert core == {("device", "d-1"): {"serial": "12345678", "owner": "alice", "team": "north"}}
    batch, batch_cursor = await alice.pull_all(classes=["batch"])
    assert batch == {
        ("device", "d-1"): {"debug_log": ["boot"]},
        ("chat_message", "ch-1"): {
            "owner": "alice",
            "team": "north",
            "room": "r-1",
            "body": "pump is leaking",
        },
    }
    both, _ = await alice.pull_all(classes=["batch", "core"])
    assert both[("device", "d-1")] == {**core[("device", "d-1")], "debug_log": ["boot"]}
    assert both[("chat_message", "ch-1")] == batch[("chat_message", "ch-1")]

    # Changes after the cursors: each pull gets its own class of them only.
    await crm.put("device", "d-1", debug_log={"add": ["fault 17"]})
    nothing, _ = await alice.pull_all(core_cursor)
    assert nothing == {}  # not even an empty record for a batch-only change
    await crm.put("device", "d-1", last_service="2026-05-01")
    await crm.put("chat_message", "ch-1", body="fixed")
    core_later, _ = await alice.pull_all(core_cursor)
    assert core_later == {("device", "d-1"): {"last_service": "2026-05-01"}}
    batch_later, _ = await alice.pull_all(batch_cursor, classes=["batch"])
    assert batch_later == {
        ("device", "d-1"): {"debug_log": ["boot", "fault 17"]},
        ("chat_message", "ch-1"): {"body": "fixed"},
    }

    # The socket's pull carries the same extension.
    async with phone(node, "alice", teams=("north",)) as socket:
        reply = await socket.request(
            {"type": "pull", "id": 1, "types": ["chat_message"], "classes": ["batch"]}
        )
        assert reply["type"] == "changes"
        assert [(c["type"], c["rid"]) for c in reply["changes"]] == [("chat_message", "ch-1")]
        refused = await socket.request({"type": "pull", "id": 2, "types": ["chat_message"]})
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "invalid", 2)
        assert 'classes ["batch"]' in refused["message"]


async def test_a_record_that_enters_a_scope_is_pushed_without_its_batch_data(
    node: RunningNode,
) -> None:
    """Before the batch class, the whole record (debug log included) and a
    chat message moved to another user were pushed as ``entered``."""
    crm = Api(node, "crm", "service")
    await seed(crm)
    async with phone(node, "bob", teams=("north",)) as bob:
        moved = await crm.push(mutation("m-1", "ch-1", "chat_message", owner="bob"))
        assert moved[0]["status"] == "applied"
        await crm.put("device", "d-1", owner="bob")
        (event,) = await bob.events(1)  # the live feed is in order: the chat sent nothing
        assert event["data"]["type"] == "device" and event["data"]["entered"] is True
        assert event["data"]["fields"] == {"serial": "12345678", "owner": "bob", "team": "north"}
        edited = await bob.request(
            {
                "type": "mutate",
                "id": 1,
                "mutations": [mutation("m-2", "ch-1", "chat_message", body="on my way")],
            }
        )
        assert edited["results"][0]["status"] == "applied"
        pulled = await bob.request({"type": "pull", "id": 2, "classes": ["batch"]})
        assert {(c["type"], c["rid"]) for c in pulled["changes"]} == {
            ("device", "d-1"),
            ("chat_message", "ch-1"),
        }


async def test_welcome_advertises_the_batch_interval(node: RunningNode) -> None:
    async with phone(node, "alice") as alice:
        assert alice.welcome["poll"]["batch"] == 1800
        assert alice.welcome["poll"]["visit_plan"] == 900


async def test_a_cursor_of_a_batch_pull_is_refused_for_a_core_pull_and_the_other_way(
    node: RunningNode,
) -> None:
    crm = Api(node, "crm", "service")
    await seed(crm)
    alice = Api(node, "alice", "sales", ("north",))
    _, core_cursor = await alice.pull_all()
    _, batch_cursor = await alice.pull_all(classes=["batch"])
    _, device_batch_cursor = await alice.pull_all(types=["device"], classes=["batch"])
    for cursor, body in [
        (batch_cursor, {}),
        (batch_cursor, {"classes": ["core"]}),
        (core_cursor, {"classes": ["batch"]}),
        (batch_cursor, {"classes": ["batch", "core"]}),
        (device_batch_cursor, {"classes": ["batch"]}),
        (device_batch_cursor, {"types": ["device"]}),
    ]:
        reply = await alice.call("POST", "/v1/sync/pull", json={"cursor": cursor, **body})
        assert reply.status_code == 422, (body, reply.text)
        assert "another set of types" in reply.json()["error"]["message"]
    # A core pull that says so is the core pull; order and repeats do not matter.
    assert (await alice.pull(cursor=core_cursor, classes=["core"]))["changes"] == []
    same = await alice.pull(cursor=batch_cursor, classes=["batch", "batch"])
    assert same["changes"] == []
    async with phone(node, "alice", teams=("north",)) as socket:
        refused = await socket.request({"type": "pull", "id": 1, "cursor": batch_cursor})
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "bad_request", 1)


HOSTILE: list[Any] = [
    "batch",
    [],
    ["files"],
    ["Batch"],
    [1],
    [None],
    [["batch"]],
    ["batch\x00\n\x1b[31m"],
    ["batch"] * 9,
    ["core"] * 5_000,
    {"batch": True},
    True,
    7,
]


@pytest.mark.parametrize("classes", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_classes_are_refused_and_the_connection_carries_on(
    node: RunningNode, classes: Any
) -> None:
    crm = Api(node, "crm", "service")
    await seed(crm)
    alice = Api(node, "alice", "sales", ("north",))
    reply = await alice.call("POST", "/v1/sync/pull", json={"classes": classes})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid" and error["message"].startswith("classes: ")
    assert "\x00" not in error["message"] and "\x1b" not in error["message"]
    async with phone(node, "alice", teams=("north",)) as socket:
        refused = await socket.request({"type": "pull", "id": 1, "classes": classes})
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "bad_request", 1)
        assert "\x00" not in refused["message"]
        fine = await socket.request({"type": "pull", "id": 2, "classes": ["batch"]})
        assert fine["type"] == "changes" and len(fine["changes"]) == 2
    batch, _ = await alice.pull_all(classes=["batch"])
    assert batch[("device", "d-1")] == {"debug_log": ["boot"]}  # nothing stored changed
