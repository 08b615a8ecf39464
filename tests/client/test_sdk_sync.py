"""The SDK's offline queue and local store (fieldpush_client.sync) against a real node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.protocol import MutationResult
from fieldpush_client.sync import QueuedEdit
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.stores import STORE_KEY, raw_bytes
from tests.support.timing import eventually, scaled


def wall_clock(start: int) -> Any:
    """A settable device clock (ms)."""
    now = [start]

    def read() -> int:
        return now[0]

    read.now = now  # type: ignore[attr-defined]
    return read


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings(sync_log_max_entries=50)) as running:
        await running.crm_put(
            "customer", "c1", name="ACME", owner="alice", team="north", budget="100"
        )
        yield running


def client_for(node: RunningNode, device: str) -> PushClient:
    return PushClient(node.ws_url, token=node.token("alice", "sales", ("north",)), device=device)


async def test_offline_edits_survive_a_restart_and_flush_in_order_on_connect(
    node: RunningNode, tmp_path: Path
) -> None:
    path = tmp_path / "phone.db"
    store = SyncStore(path, key=STORE_KEY)
    store.edit("customer", "c1", {"stage": "negotiation", "vehicle_preference": "X9"})
    store.edit("follow_up", "f1", {"customer": "c1", "note": "call back"})
    store.edit("customer", "c1", {"name": "ACME Ltd"})  # mdm: refused, a proposal
    assert store.record("customer", "c1") == {
        "stage": "negotiation",
        "vehicle_preference": "X9",
        "name": "ACME Ltd",
    }
    store.close()

    store = SyncStore(path, key=STORE_KEY)  # the app restarted
    assert [e.type for e in store.queued()] == ["customer", "follow_up", "customer"]
    answers: list[tuple[QueuedEdit, MutationResult]] = []
    async with (
        client_for(node, "a-phone") as client,
        SyncClient(client, store, on_result=lambda edit, result: answers.append((edit, result))),
    ):
        await eventually(
            lambda: len(answers) == 3 and store.cursor is not None,
            message="three answers and a cursor",
        )
        await eventually(
            lambda: (
                store.record("customer", "c1") is not None
                and store.record("customer", "c1")["name"] == "ACME"
            ),
            message="the pulled name",
        )
    assert [r.status for _, r in answers] == ["applied", "applied", "rejected"]
    assert answers[2][1].reason == "mdm_owned"
    assert store.queued() == []
    view = store.record("customer", "c1")
    assert view is not None
    assert (
        view["name"] == "ACME"
        and view["stage"] == "negotiation"
        and view["vehicle_preference"] == "X9"
    )
    assert view["budget"] == 100  # from the pull
    assert store.records("follow_up")["f1"]["note"] == "call back"
    # Typed (the note, the stage), pulled (the name) and answered: none of it in clear.
    for name, data in raw_bytes(path).items():
        for typed in (b"call back", b"negotiation", b"ACME", b"ACME Ltd"):
            assert typed not in data, f"{typed!r} in {name}"
    store.close()
    assert not any(b"call back" in data or b"ACME" in data for data in raw_bytes(path).values())


async def test_two_phones_edit_one_customer_offline_and_the_newest_stamp_wins(
    node: RunningNode, tmp_path: Path
) -> None:
    base = time.time_ns() // 1_000_000
    phone_clock, tablet_clock = wall_clock(base), wall_clock(base + 5_000)
    phone = SyncStore(tmp_path / "phone.db", key=STORE_KEY, wall_ms=phone_clock)
    tablet = SyncStore(tmp_path / "tablet.db", key=STORE_KEY, wall_ms=tablet_clock)
    phone.edit("customer", "c1", {"stage": "lost", "budget": 900})
    tablet.edit("customer", "c1", {"stage": "signed"})  # later by its clock
    phone_clock.now[0] = base + 9_000
    phone.edit("customer", "c1", {"intended_model": "T4"})

    async with (
        client_for(node, "a-tablet") as tablet_client,
        SyncClient(tablet_client, tablet, auto=False) as tablet_sync,
    ):
        await tablet_client.wait_connected(scaled(5))
        tablet_results = await tablet_sync.flush()
    async with (
        client_for(node, "a-phone") as phone_client,
        SyncClient(phone_client, phone, auto=False) as phone_sync,
    ):
        await phone_client.wait_connected(scaled(5))
        phone_results = await phone_sync.flush()
        await phone_sync.pull()
    assert [r.status for _, r in tablet_results] == ["applied"]
    first, second = (result for _, result in phone_results)
    assert first.status == "conflict" and first.fields == {"stage": "conflict", "budget": "applied"}
    assert first.record is not None and first.record["stage"] == "signed"  # the winning value
    assert second.status == "applied"
    view = phone.record("customer", "c1")
    assert view is not None
    assert (view["stage"], view["budget"], view["vehicle_preference"]) == ("signed", 900, "T4")
    async with (
        client_for(node, "a-tablet") as tablet_client,
        SyncClient(tablet_client, tablet, auto=False) as tablet_sync,
    ):
        await tablet_client.wait_connected(scaled(5))
        await tablet_sync.pull()
    tablet_view = tablet.record("customer", "c1")
    assert tablet_view is not None
    assert (tablet_view["stage"], tablet_view["budget"], tablet_view["vehicle_preference"]) == (
        "signed",
        900,
        "T4",
    )


async def test_a_refused_edit_disappears_from_the_view(node: RunningNode, tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    store.edit("customer", "c1", {"budget": -3})
    store.edit("customer", "c1", {"contract_no": "K-9"})
    assert store.record("customer", "c1") == {"budget": -3, "contract_no": "K-9"}
    async with client_for(node, "p") as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        results = [r for _, r in await sync.flush()]
        await sync.pull()
    assert [(r.status, r.reason) for r in results] == [
        ("rejected", "validation"),
        ("rejected", "field_locked"),
    ]
    view = store.record("customer", "c1")
    assert view is not None and view["budget"] == 100 and "contract_no" not in view


async def test_an_expired_cursor_makes_the_sdk_download_everything_again(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    async with client_for(node, "p") as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        await sync.pull()
        old_cursor = store.cursor
        for i in range(60):  # the node keeps 50 log entries
            await node.crm_put("customer", "c1", budget=str(i))
        await node.crm_put("customer", "c2", name="Second", owner="alice")
        await sync.pull()
    assert store.cursor != old_cursor
    assert store.records("customer")["c1"]["budget"] == 59
    assert store.records("customer")["c2"]["name"] == "Second"


def test_edits_get_increasing_stamps_even_when_the_clock_goes_back(tmp_path: Path) -> None:
    clock = wall_clock(1_000)
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY, wall_ms=clock)
    first = store.edit("customer", "c1", {"stage": "lead"})
    clock.now[0] = 500
    second = store.edit("customer", "c1", {"stage": "lost"})
    clock.now[0] = 2_000
    third = store.edit("customer", "c1", None)
    assert first.hlc < second.hlc < third.hlc == (2_000, 0)
    assert store.record("customer", "c1") is None  # deleted by a queued edit
    with pytest.raises(ValueError):
        store.edit("customer", "c1", {})


async def test_sync_client_edit_flushes_at_once_when_connected(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    async with client_for(node, "p") as client, SyncClient(client, store) as sync:
        await client.wait_connected(scaled(5))
        sync.edit("customer", "c1", {"stage": "lost"})
        await eventually(lambda: store.queued() == [], message="the queue is flushed")
    assert store.record("customer", "c1") is not None
    assert store.record("customer", "c1")["stage"] == "lost"  # type: ignore[index]
