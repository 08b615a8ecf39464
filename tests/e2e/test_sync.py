"""Black-box delta sync: two ``fieldpush serve`` processes on one real
redis-server, phones driving the SDK, a phone process killed mid-flush, and a
phone that keeps editing through node kills, Redis restarts and app restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from tests.support.cli import ServeProcess
from tests.support.cluster import start_node, token
from tests.support.redis_server import RedisServer
from tests.support.stores import STORE_KEY
from tests.support.timing import eventually, scaled

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRM = {"Authorization": f"Bearer {token('crm', 'service')}"}


def ws(node: ServeProcess) -> str:
    return node.url.replace("http://", "ws://") + "/v1/ws"


async def feed(url: str) -> list[dict[str, Any]]:
    """The whole CRM change feed, page by page."""
    changes: list[dict[str, Any]] = []
    cursor = None
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(url + "/v1/changes", params=params, headers=CRM)).json()
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["more"]:
                return changes


async def test_two_phones_edit_one_customer_offline_on_two_nodes(
    cluster: tuple[ServeProcess, ServeProcess], tmp_path: Path
) -> None:
    node_a, node_b = cluster
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        reply = await http.put(
            node_a.url + "/v1/records/customer/c1",
            json={"fields": {"name": "ACME", "owner": "alice", "team": "north", "budget": "500"}},
            headers=CRM,
        )
        assert reply.status_code == 200, reply.text
    now = time.time_ns() // 1_000_000
    phone = SyncStore(tmp_path / "phone.db", key=STORE_KEY, wall_ms=lambda: now)
    tablet = SyncStore(tmp_path / "tablet.db", key=STORE_KEY, wall_ms=lambda: now + 2_000)
    phone.edit("customer", "c1", {"stage": "negotiation", "budget": 800})  # older stamp
    phone.edit("customer", "c1", {"name": "ACME Holding"})  # mdm: a proposal
    tablet.edit("customer", "c1", {"stage": "signed", "vehicle_preference": "X9"})  # newer stamp
    tablet.edit("follow_up", "f1", {"customer": "c1", "note": "signed today"})
    alice = token("alice", "sales", ("north",))
    async with (
        PushClient(ws(node_a), token=alice, device="a-phone") as phone_client,
        PushClient(ws(node_b), token=alice, device="a-tablet") as tablet_client,
        SyncClient(phone_client, phone, auto=False) as phone_sync,
        SyncClient(tablet_client, tablet, auto=False) as tablet_sync,
    ):
        await phone_client.wait_connected(scaled(10))
        await tablet_client.wait_connected(scaled(10))
        phone_results, tablet_results = await asyncio.gather(
            phone_sync.flush(), tablet_sync.flush()
        )
        await asyncio.gather(phone_sync.pull(), tablet_sync.pull())
    assert [r.status for _, r in tablet_results] == ["applied", "applied"]
    statuses = [(r.status, r.reason) for _, r in phone_results]
    # The phone's stage may have arrived first (applied, then overwritten) or
    # second (a conflict); its budget wins either way (nobody else set it).
    assert statuses[0][0] in ("applied", "conflict") and statuses[1] == ("rejected", "mdm_owned")
    for store in (phone, tablet):
        view = store.record("customer", "c1")
        assert view is not None
        assert (view["name"], view["stage"], view["budget"], view["vehicle_preference"]) == (
            "ACME",
            "signed",
            800,
            "X9",
        )
        assert store.records("follow_up")["f1"]["note"] == "signed today"
    changes = await feed(node_b.url)
    assert [(c["kind"], c["device"]) for c in changes if c["actor"] == "alice"].count(
        ("proposal", "a-phone")
    ) == 1
    names = [c["fields"]["name"]["new"] for c in changes if c["kind"] == "proposal"]
    assert names == ["ACME Holding"]


def queued(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM queue").fetchone()[0])


def flusher(db: Path, node: ServeProcess, alice: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.sync_flush", str(db), ws(node), alice, "a-phone"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_a_phone_killed_mid_flush_loses_no_edit_and_applies_none_twice(
    cluster: tuple[ServeProcess, ServeProcess], tmp_path: Path
) -> None:
    node_a, node_b = cluster
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        await http.put(
            node_a.url + "/v1/records/customer/c1",
            json={"fields": {"name": "ACME", "owner": "alice"}},
            headers=CRM,
        )
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY)
    edits = []
    for i in range(300):
        if i % 2:
            edits.append(store.edit("customer", "c1", {"name": f"Proposal {i}"}))
        else:
            edits.append(store.edit("follow_up", f"f{i}", {"customer": "c1", "note": f"n{i}"}))
    store.close()
    alice = token("alice", "sales", ("north",))  # her follow-ups go to her one team
    first = flusher(db, node_a, alice)
    try:

        def flushing() -> bool:
            assert first.poll() is None, first.communicate()[0]
            return queued(db) < len(edits)

        await eventually(flushing, timeout=30, interval=0.005, message="the flush began")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    left = queued(db)
    assert 0 < left < len(edits), "the flush was not interrupted: make the queue longer"
    second = flusher(db, node_b, alice)  # the app starts again, on the other node
    output, _ = second.communicate(timeout=scaled(60))
    assert second.returncode == 0, output
    assert queued(db) == 0
    changes = await feed(node_a.url)
    by_mid: dict[str, int] = {}
    for change in changes:
        if change["mid"]:
            by_mid[change["mid"]] = by_mid.get(change["mid"], 0) + 1
    assert by_mid == {edit.mid: 1 for edit in edits}  # every edit once, none twice
    follow_ups = [c["rid"] for c in changes if c["type"] == "follow_up"]
    assert follow_ups == [f"f{i}" for i in range(0, 300, 2)]  # and in order


async def test_edits_survive_app_restarts_node_kills_and_redis_restarts(tmp_path: Path) -> None:
    """Issue 13, item 4: a phone keeps editing while its node is killed,
    redis-server is killed and restarted, and the app itself restarts; the
    SDK flushes by itself (``auto``), and the CRM's feed ends up with every
    edit exactly once, in the order it was made."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    node_a, node_b = start_node(redis.url, "node-a"), start_node(redis.url, "node-b")
    alice = token("alice", "sales", ("north",))
    db = tmp_path / "phone.db"
    made: list[str] = []

    def app() -> tuple[SyncStore, PushClient]:
        client = PushClient(
            [node_a.ws_url, node_b.ws_url],
            token=alice,
            device="a-phone",
            fallback_after_failures=0,
            request_timeout_s=2,
        )
        return SyncStore(db, key=STORE_KEY), client

    async def edit_some(sync: SyncClient, count: int) -> None:
        for _ in range(count):
            i = len(made)
            made.append(sync.edit("follow_up", f"f{i}", {"customer": "c1", "note": f"n{i}"}).mid)

    def drained(store: SyncStore) -> bool:
        return store.queued() == []

    try:
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            await http.put(
                node_b.url + "/v1/records/customer/c1",
                json={"fields": {"name": "ACME", "owner": "alice"}},
                headers=CRM,
            )
        store, client = app()
        async with client, SyncClient(client, store) as sync:
            await client.wait_connected(scaled(10))
            await edit_some(sync, 10)
            node_a.kill()  # SIGKILL, possibly mid-flush: the phone moves to node B
            await edit_some(sync, 10)
            await eventually(lambda: drained(store), timeout=30, message="flushed via node B")
            redis.kill()
            await edit_some(sync, 10)  # answered unavailable, or not at all
            redis.restart()
            await edit_some(sync, 5)
            await eventually(lambda: drained(store), timeout=30, message="flushed after Redis")
            await edit_some(sync, 5)
        store.close()  # the app is closed with edits possibly still queued
        store, client = app()  # and started again
        async with client, SyncClient(client, store) as sync:
            await edit_some(sync, 5)
            await eventually(lambda: drained(store), timeout=60, message="every edit flushed")
        store.close()
        changes = await feed(node_b.url)
    finally:
        node_a.stop()
        assert node_b.stop() == 0, node_b.output
        redis.stop()
    mids = [c["mid"] for c in changes if c["type"] == "follow_up"]
    assert sorted(mids) == sorted(made), "an edit was lost or applied twice"
    assert [c["rid"] for c in changes if c["type"] == "follow_up"] == [
        f"f{i}" for i in range(len(made))
    ]
