"""The SDK's batch sync (fieldpush_client.batch) against an in-process node:
batch data comes on the advertised schedule and never with the core pull, the
byte budget splits a backlog across batches without losing any of it, a
metered network (the app's ``unmetered`` hook) and critical events hold a
batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.batch import BatchSync, Held
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import publish
from tests.support.stores import STORE_KEY
from tests.support.timing import eventually, scaled


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    settings = node_settings(poll_intervals_s={"low": 900.0, "batch": scaled(0.2)})
    async with running_node(settings) as running:
        await running.crm_put(
            "device", "d-1", serial="12345678", owner="alice", team="north", debug_log=["boot"]
        )
        await running.crm_put(
            "chat_message", "ch-1", owner="alice", team="north", room="r-1", body="leaking"
        )
        yield running


def client_for(node: RunningNode, **options: object) -> PushClient:
    token = node.token("alice", "sales", ("north",))
    return PushClient(node.ws_url, token=token, device="a-phone", **options)  # type: ignore[arg-type]


async def test_batch_data_comes_on_schedule_and_never_with_the_core_pull(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        await eventually(lambda: store.cursor is not None, message="the core pull")
        assert store.record("device", "d-1") == {
            "serial": "12345678",
            "owner": "alice",
            "team": "north",
        }
        assert store.records("chat_message") == {}
        assert client.session is not None and client.session.poll["batch"] == scaled(0.2)
        BatchSync(sync).schedule()
        await eventually(
            lambda: store.records("chat_message").get("ch-1"), message="the first batch"
        )
        assert store.record("device", "d-1") == {
            "serial": "12345678",
            "owner": "alice",
            "team": "north",
            "debug_log": ["boot"],
        }
        await node.crm_put(
            "chat_message", "ch-2", owner="alice", team="north", room="r-1", body="ok"
        )
        await eventually(
            lambda: store.records("chat_message").get("ch-2"), message="the next batch"
        )
        await sync.pull()  # a core pull keeps the batch data it does not carry
        assert store.record("device", "d-1")["debug_log"] == ["boot"]  # type: ignore[index]


async def test_the_budget_splits_a_backlog_across_batches_and_loses_nothing(
    node: RunningNode, tmp_path: Path
) -> None:
    bodies = {f"ch-{n:02}": f"{n:02} " + "x" * 900 for n in range(30)}
    for rid, body in bodies.items():
        await node.crm_put("chat_message", rid, owner="alice", team="north", room="r", body=body)
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client:
        sync = SyncClient(client, store, auto=False)
        batch = BatchSync(sync, budget_bytes=4000, page_size=2)
        outcomes = []
        while not outcomes or outcomes[-1].more:
            outcomes.append(await batch.run())
            assert len(outcomes) < 40, "the batches never ended"
        assert len(outcomes) > 3  # one batch could not carry it all
        assert all(o.bytes < 4000 + 2 * 1200 for o in outcomes)  # stopped at the budget
        held = {rid: fields["body"] for rid, fields in store.records("chat_message").items()}
        assert held == {"ch-1": "leaking", **bodies}
        assert sum(o.changes for o in outcomes) >= 31
        again = await batch.run()
        assert (again.changes, again.more) == (0, False)


async def test_a_metered_network_holds_the_batch(node: RunningNode, tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    unmetered = [False]
    async with client_for(node) as client:
        sync = SyncClient(client, store, auto=False)
        batch = BatchSync(sync, unmetered=lambda: unmetered[0])
        held = await batch.run()
        assert held.held == Held.METERED and held.changes == 0
        assert store.records("chat_message") == {}
        assert store.cursor_for(None, ["batch"]) is None  # nothing was pulled
        unmetered[0] = True
        ran = await batch.run()
        assert ran.held is None and ran.changes == 2
        assert "ch-1" in store.records("chat_message")


async def test_critical_events_on_the_socket_pause_the_batch(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node, auto_ack=False) as client:
        sync = SyncClient(client, store, auto=False)
        await client.ping()  # connected
        batch = BatchSync(sync, critical_quiet_s=scaled(3600))
        urgent = await publish(node, ["user:alice"], {"wo": "w-1"}, priority="critical")
        await eventually(lambda: client.critical_busy(0), message="the critical event arrived")
        assert (await batch.run()).held == Held.CRITICAL  # not acked yet
        await client.ack(urgent["id"])
        assert (await batch.run()).held == Held.CRITICAL  # acked, but within the quiet time
        assert store.records("chat_message") == {}
        batch.critical_quiet_s = 0
        ran = await batch.run()
        assert ran.held is None and "ch-1" in store.records("chat_message")


async def test_a_core_full_download_restarts_the_batch_download(
    node: RunningNode, tmp_path: Path
) -> None:
    """A core snapshot forgets the records of its types, their batch fields
    included; the batch cursor must not skip past what it forgot."""
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client:
        sync = SyncClient(client, store, auto=False)
        batch = BatchSync(sync)
        await sync.pull()
        assert (await batch.run()).changes == 2
        assert store.cursor_for(None, ["batch"]) is not None
        store.restart_download()
        await sync.pull()  # the full download of the core data
        assert "debug_log" not in store.record("device", "d-1")  # type: ignore[operator]
        assert store.cursor_for(None, ["batch"]) is None
        assert (await batch.run()).changes == 2
        assert store.record("device", "d-1")["debug_log"] == ["boot"]  # type: ignore[index]
