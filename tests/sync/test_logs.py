"""Append-only list fields (rule ``append``, the device's ``service_log``)
through a real node on both backends: concurrent additions are all kept in
stamp order, a replayed ``mid`` adds nothing, removal is explicit, readers
(pull, the CRM feed, exports) see plain lists, hostile values are refused
without changing anything stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import phone
from tests.sync.test_sync import Api, mutation, node, now_ms

__all__ = ["node"]

ROOT = Path(__file__).resolve().parents[2]

ENG1 = ("eng1", "after_sales")
ENG2 = ("eng2", "after_sales")


async def device(crm: Api, log: list[str] | None = None) -> None:
    await crm.put(
        "device", "d-1", serial="12345678", owner="alice", team="north",
        service_log=log if log is not None else ["installed"],
    )  # fmt: skip


def log_of(seen: dict[tuple[str, str], Any]) -> Any:
    return seen[("device", "d-1")]["service_log"]


async def test_two_engineers_adding_from_the_same_list_both_keep_their_entries(
    node: RunningNode,
) -> None:
    crm = Api(node, "crm", "service")
    await device(crm)
    eng1, eng2 = Api(node, *ENG1), Api(node, *ENG2)
    base = now_ms()
    late = await eng2.push(
        mutation("e2", "d-1", "device", hlc=[base + 50, 0], service_log=["installed", "belt"]),
        device="eng2-phone",
    )
    early = await eng1.push(
        mutation("e1", "d-1", "device", hlc=[base, 0], service_log=["installed", "filter"]),
        device="eng1-phone",
    )
    assert late[0]["status"] == "applied"
    assert early[0]["status"] == "applied"  # the older stamp is not a conflict
    seen, _ = await eng1.pull_all()
    assert log_of(seen) == ["installed", "filter", "belt"]  # in stamp order
    feed = (await crm.call("GET", "/v1/changes")).json()["changes"]
    logs = [c["fields"]["service_log"] for c in feed if "service_log" in c["fields"]]
    assert logs == [
        {"old": None, "new": ["installed"]},
        {"old": ["installed"], "new": ["installed", "belt"]},
        {"old": ["installed", "belt"], "new": ["installed", "filter", "belt"]},
    ]  # plain lists on the CRM's feed
    admin = Api(node, "root", "admin")
    exported = await admin.call("GET", "/v1/export/device")
    assert exported.status_code == 200, exported.text
    (line,) = [json.loads(text) for text in exported.text.splitlines()]
    assert line["fields"]["service_log"] == ["installed", "filter", "belt"]


async def test_a_replayed_mid_or_a_resent_list_adds_nothing(node: RunningNode) -> None:
    crm = Api(node, "crm", "service")
    await device(crm)
    eng1 = Api(node, *ENG1)
    add = mutation("e1", "d-1", "device", service_log={"add": ["filter"]})
    first = await eng1.push(add, device="eng1-phone")
    assert first[0]["status"] == "applied"
    removed = await eng1.push(
        mutation("e2", "d-1", "device", service_log={"remove": ["filter"]}), device="eng1-phone"
    )
    assert removed[0]["status"] == "applied"
    assert await eng1.push(add, device="eng1-phone") == first  # the kept result, nothing added
    seen, cursor = await eng1.pull_all()
    assert log_of(seen) == ["installed"]
    resent = await eng1.push(
        mutation("e3", "d-1", "device", service_log=["installed"]), device="eng1-phone"
    )
    assert resent[0]["status"] == "applied"
    later, _ = await eng1.pull_all(cursor)
    assert later == {}  # nothing changed, nothing logged


async def test_removal_is_explicit_on_both_sides(node: RunningNode) -> None:
    crm = Api(node, "crm", "service")
    await device(crm, ["installed", "wrong entry"])
    eng1 = Api(node, *ENG1)
    await eng1.push(
        mutation("e1", "d-1", "device", service_log=["installed", "filter"]), device="eng1-phone"
    )
    written = await crm.put("device", "d-1", service_log=["installed", "crm visit"])
    assert written["fields"]["service_log"] == ["installed", "wrong entry", "filter", "crm visit"]
    removed = await crm.put("device", "d-1", service_log={"remove": ["wrong entry"]})
    assert removed["fields"]["service_log"] == ["installed", "filter", "crm visit"]
    top = await node.node.backend.records.log_top()
    again = await eng1.push(
        mutation("e2", "d-1", "device", service_log={"remove": ["wrong entry"]}),
        device="eng1-phone",
    )
    assert again[0]["status"] == "applied"  # already gone: nothing to do
    assert await node.node.backend.records.log_top() == top  # and nothing written


async def test_a_phone_without_write_access_adds_nothing(node: RunningNode) -> None:
    crm = Api(node, "crm", "service")
    await device(crm)
    alice = Api(node, "alice", "sales", ("north",))  # reads her devices, writes none
    (result,) = await alice.push(
        mutation("s1", "d-1", "device", service_log={"add": ["mine"]}), device="alice-phone"
    )
    assert (result["status"], result["reason"]) == ("rejected", "forbidden")
    seen, _ = await alice.pull_all()
    assert log_of(seen) == ["installed"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["x"] * 501, "service_log.add may have at most 500 items, not 501"),
        ([{"deep": [{"deeper": ["x"]}]}], "service_log[] must be a string"),
        (["ok", 7], "service_log[] must be a string"),
        ({"add": ["a"], "drop": ["b"]}, 'must be a list of items or {"add"'),
        ({"add": ["a"], "remove": ["a"]}, "both added and removed"),
        ("a string", 'must be a list of items or {"add"'),
    ],
)
async def test_a_hostile_log_value_is_refused_and_changes_nothing(
    node: RunningNode, value: Any, message: str
) -> None:
    crm = Api(node, "crm", "service")
    await device(crm)
    eng1, eng2 = Api(node, *ENG1), Api(node, *ENG2)
    top = await node.node.backend.records.log_top()
    (result,) = await eng1.push(mutation("h1", "d-1", "device", service_log=value), device="e1")
    assert (result["status"], result["reason"]) == ("rejected", "validation")
    assert message in result["message"]
    assert await node.node.backend.records.log_top() == top
    (other,) = await eng2.push(mutation("ok", "d-1", "device", service_log=["fine"]), device="e2")
    assert other["status"] == "applied"  # others carry on
    seen, _ = await eng2.pull_all()
    assert log_of(seen) == ["installed", "fine"]


async def test_a_full_log_refuses_an_addition_and_the_crm_is_told_why(node: RunningNode) -> None:
    crm = Api(node, "crm", "service")
    full = [f"entry {i}" for i in range(500)]
    await device(crm, full)
    eng1 = Api(node, *ENG1)
    (result,) = await eng1.push(
        mutation("f1", "d-1", "device", service_log=["one more"]), device="e1"
    )
    assert (result["status"], result["reason"]) == ("rejected", "validation")
    assert result["message"] == "service_log would have more than 500 items"
    refused = await crm.call(
        "PUT", "/v1/records/device/d-1", json={"fields": {"service_log": ["one more"]}}
    )
    assert refused.status_code == 422, refused.text
    assert "service_log would have more than 500 items" in refused.text
    seen, _ = await eng1.pull_all()
    assert log_of(seen) == full


async def test_a_renamed_realtime_log_is_pushed_and_pulled_as_a_plain_list(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    schema = (ROOT / "config" / "schema.toml").read_text()
    line = 'service_log = { type = "list", items = "string", rule = "append", max_length = 500 }'
    assert line in schema
    realtime = line.replace("max_length = 500", 'max_length = 500, sync = "realtime"')
    (tmp_path / "schema.toml").write_text(schema.replace(line, realtime))
    (tmp_path / "mappings.toml").write_text(
        '[phone.device.log]\nfield = "service_log"\n'
        '[crm.device.ServiceLog]\nfield = "service_log"\n'
    )
    config = {"schema_path": str(tmp_path / "schema.toml")}
    async with start_node(**config, mappings_path=str(tmp_path / "mappings.toml")) as running:
        crm = Api(running, "crm", "service")
        written = await crm.put(
            "device",
            "d-1",
            serial="12345678",
            owner="alice",
            team="north",
            ServiceLog=["installed"],
        )
        assert written["fields"]["ServiceLog"] == ["installed"]
        async with phone(
            running, "boss", role="supervisor", teams=("north",), subs={"records:north": None}
        ) as boss:
            eng1 = Api(running, *ENG1)
            (result,) = await eng1.push(
                mutation("e1", "d-1", "device", log={"add": ["filter"]}), device="eng1-phone"
            )
            assert result["status"] == "applied"
            (event,) = await boss.events(1)
            assert event["kind"] == "record.changed"
            assert event["data"]["fields"] == {"log": ["installed", "filter"]}
        seen, _ = await eng1.pull_all()
        assert seen[("device", "d-1")]["log"] == ["installed", "filter"]
        feed = (await crm.call("GET", "/v1/changes")).json()["changes"]
        assert feed[-1]["fields"] == {
            "ServiceLog": {"old": ["installed"], "new": ["installed", "filter"]}
        }
        removed = await crm.put("device", "d-1", ServiceLog={"remove": ["installed"]})
        assert removed["fields"]["ServiceLog"] == ["filter"]
