"""Data drift (docs/sync.md, "Data drift"): a phone's store that lost or changed
records behind the SDK converges after one sync, against a real node; what the
node counts (metrics, the device registry)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.batch import BatchSync
from fieldpush_client.protocol import Change, Changes, client_messages
from fieldpush_client.vault import aad
from tests.support import scrape
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.stores import STORE_KEY
from tests.support.timing import scaled

CUSTOMERS = 40


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings(sync_drift_interval_s=0)) as running:
        for n in range(CUSTOMERS):
            await running.crm_put(
                "customer", f"c{n:02d}", name=f"C{n}", owner="alice", team="north", budget=n
            )
        await running.crm_put("customer", "other", name="O", owner="bob", team="north")
        await running.crm_put(
            "device",
            "d1",
            customer="c01",
            model="X9",
            serial="12345678",
            owner="alice",
            team="north",
            debug_log=["boot"],
        )
        yield running


def client_for(node: RunningNode) -> PushClient:
    return PushClient(node.ws_url, token=node.token("alice", "sales", ("north",)), device="a-phone")


def tamper(path: Path, record_type: str, rid: str, fields: dict[str, object] | None) -> None:
    """Change a closed store's file behind the SDK: seal ``fields`` as the
    record (None: delete its row), as a lost or a wrong write would leave it."""
    store = SyncStore(path, key=STORE_KEY)
    type_tag, rid_tag = store._tags(record_type, rid)
    cipher = store._cipher
    store.close()
    db = sqlite3.connect(path)
    with db:
        if fields is None:
            db.execute(
                "DELETE FROM records WHERE type_tag = ? AND rid_tag = ?", (type_tag, rid_tag)
            )
        else:
            payload = json.dumps([record_type, rid, fields]).encode()
            sealed = cipher.seal(payload, aad(b"record", type_tag, rid_tag))
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (type_tag, rid_tag, sealed)
            )
    db.close()


async def sync_once(node: RunningNode, store: SyncStore) -> int:
    async with client_for(node) as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        return await sync.pull()


def metric_lines(node: RunningNode, name: str) -> list[str]:
    return scrape.lines(node.node.metrics.render(), name)


async def admin_devices(node: RunningNode) -> list[dict[str, object]]:
    token = node.token("root", "admin")
    async with httpx.AsyncClient(base_url=node.url) as http:
        answer = await http.get(
            "/v1/admin/users/alice/devices", headers={"Authorization": f"Bearer {token}"}
        )
    answer.raise_for_status()
    devices: list[dict[str, object]] = answer.json()
    return devices


async def test_a_store_that_lost_and_changed_records_converges_after_one_sync(
    node: RunningNode, tmp_path: Path
) -> None:
    path = tmp_path / "phone.db"
    store = SyncStore(path, key=STORE_KEY)
    await sync_once(node, store)  # the full download
    truth = store.records("customer")
    assert len(truth) == CUSTOMERS and "other" not in truth
    device_truth = store.records("device")
    await sync_once(node, store)  # caught up, the digests agree
    assert metric_lines(node, "fieldpush_devices_drifting") == ["fieldpush_devices_drifting 0"]
    assert not any("drift_records_total{" in line for line in metric_lines(node, "fieldpush_"))
    store.close()

    tamper(path, "customer", "c03", None)  # a record lost
    tamper(path, "customer", "c07", {**truth["c07"], "budget": 999})  # a value changed
    tamper(path, "customer", "other", {"name": "O"})  # one it should not hold
    tamper(path, "device", "d1", None)
    store = SyncStore(path, key=STORE_KEY)
    assert "c03" not in store.records("customer")

    await sync_once(node, store)  # one sync: compared, repaired

    assert store.records("customer") == truth
    assert store.records("device") == device_truth
    assert metric_lines(node, "fieldpush_drift_records_total") == [
        'fieldpush_drift_records_total{type="customer"} 3',
        'fieldpush_drift_records_total{type="device"} 1',
    ]
    assert metric_lines(node, "fieldpush_devices_drifting") == ["fieldpush_devices_drifting 1"]
    (device,) = await admin_devices(node)
    drift = device["drift"]
    assert isinstance(drift, dict)
    assert {name: entry["records"] for name, entry in drift.items()} == {"customer": 3, "device": 1}

    await sync_once(node, store)  # the next sync finds nothing: no longer drifting
    assert metric_lines(node, "fieldpush_devices_drifting") == ["fieldpush_devices_drifting 0"]
    assert metric_lines(node, "fieldpush_drift_records_total")[0].endswith(" 3")
    store.close()


async def test_the_store_digest_follows_pulls_without_a_scan(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    await sync_once(node, store)
    before = store.digest()
    assert before["customer"].count == CUSTOMERS
    await node.crm_put("customer", "c05", name="Renamed")
    await node.crm_put("customer", "c99", name="New", owner="alice", team="north")
    await sync_once(node, store)
    after = store.digest()
    assert after["customer"].count == CUSTOMERS + 1 and after["customer"] != before["customer"]
    rebuilt = SyncStore(tmp_path / "phone.db", key=STORE_KEY)  # built from the records
    store.close()
    assert rebuilt.digest() == after
    assert metric_lines(node, "fieldpush_devices_drifting") == ["fieldpush_devices_drifting 0"]
    rebuilt.close()


async def test_batch_data_held_beside_the_core_data_is_no_drift(
    node: RunningNode, tmp_path: Path
) -> None:
    await node.crm_put("chat_message", "m1", owner="alice", team="north", room="r", body="hi")
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        await sync.pull()
        outcome = await BatchSync(sync).run()  # debug_log and the chat history
        assert outcome.changes == 2
        assert store.record("device", "d1")["debug_log"] == ["boot"]  # type: ignore[index]
        await node.crm_put("device", "d1", debug_log=["boot", "ok"])  # batch data only
        await BatchSync(sync).run()
        await sync.pull()  # compared: what it holds of the core data is right
    assert metric_lines(node, "fieldpush_devices_drifting") == ["fieldpush_devices_drifting 0"]
    assert metric_lines(node, "fieldpush_drift_records_total") == []
    assert store.record("device", "d1")["debug_log"] == ["boot", "ok"]  # type: ignore[index]
    store.close()


def test_a_write_that_rolls_back_leaves_the_digests_as_the_records_are(tmp_path: Path) -> None:
    path = tmp_path / "phone.db"
    store = SyncStore(path, key=STORE_KEY)
    first = Changes(0, [Change("customer", "c1", {"name": "A"})], "k1", more=False)
    store.apply_changes(first)
    held = store.digest()
    broken = Changes(
        0,
        [Change("customer", "c2", {"name": "B"}), Change("customer", "c3", {"x": {1, 2}})],
        "k2",
        more=False,
    )
    with pytest.raises(TypeError):  # a set is no JSON: the page is rolled back
        store.apply_changes(broken)
    assert store.digest() == held and store.cursor == "k1"
    store.apply_changes(Changes(0, [Change("customer", "c2", {"name": "B"})], "k3", more=False))
    kept = store.digest()
    assert kept["customer"].count == 2
    store.close()
    reopened = SyncStore(path, key=STORE_KEY)  # digests built from the records
    assert reopened.digest() == kept
    reopened.close()


async def test_a_server_that_refuses_digests_is_pulled_from_without_them(
    node: RunningNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node from before issue 15 refuses a pull with ``digest`` as an unknown
    field: the node under test is made to parse pulls as it did."""
    before = frozenset({"type", "id", "cursor", "types", "limit", "classes"})
    monkeypatch.setitem(client_messages._CLIENT_FIELDS, "pull", before)
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        await sync.pull()  # the full download: no digest yet
        await node.crm_put("customer", "c05", name="Renamed")
        assert await sync.pull() == 1  # refused with the digest, pulled again without
        assert sync.drift is False
        assert store.record("customer", "c05")["name"] == "Renamed"  # type: ignore[index]
    store.close()
