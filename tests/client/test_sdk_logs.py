"""The SDK's local view of an ``append`` field (a device's ``service_log``)
against a real node: the user's own addition shows at once, in either wire
form, and every phone converges to the server's merged log after a pull."""

from __future__ import annotations

import time
from pathlib import Path

from fieldpush_client import PushClient, SyncClient, SyncStore
from tests.client.test_sdk_sync import wall_clock
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.stores import STORE_KEY
from tests.support.timing import scaled


async def sync_once(node: RunningNode, user: str, store: SyncStore) -> None:
    """Connect as engineer ``user``, flush the queue, pull, disconnect."""
    token = node.token(user, "after_sales")
    async with (
        PushClient(node.ws_url, token=token, device=f"{user}-phone") as client,
        SyncClient(client, store, auto=False) as sync,
    ):
        await client.wait_connected(scaled(5))
        await sync.flush()
        await sync.pull()


async def test_own_additions_show_at_once_and_phones_converge_to_the_merged_log(
    tmp_path: Path,
) -> None:
    async with running_node(node_settings()) as node:
        await node.crm_put(
            "device", "d-1", serial="12345678", owner="alice", team="north",
            service_log=["installed"],
        )  # fmt: skip
        base = time.time_ns() // 1_000_000
        eng1 = SyncStore(tmp_path / "eng1.db", key=STORE_KEY, wall_ms=wall_clock(base))
        eng2 = SyncStore(tmp_path / "eng2.db", key=STORE_KEY, wall_ms=wall_clock(base + 50))
        for user, store in (("eng1", eng1), ("eng2", eng2)):
            await sync_once(node, user, store)
            assert store.record("device", "d-1")["service_log"] == ["installed"]  # type: ignore[index]
        eng1.edit("device", "d-1", {"service_log": {"add": ["filter"]}})  # offline, earlier
        eng2.edit("device", "d-1", {"service_log": ["installed", "belt"]})
        eng1_view, eng2_view = eng1.record("device", "d-1"), eng2.record("device", "d-1")
        assert eng1_view is not None and eng1_view["service_log"] == ["installed", "filter"]
        assert eng2_view is not None and eng2_view["service_log"] == ["installed", "belt"]
        eng1.edit("device", "d-1", {"service_log": {"remove": ["nothing"], "add": ["filter"]}})
        again = eng1.record("device", "d-1")
        assert again is not None and again["service_log"] == ["installed", "filter"]
        await sync_once(node, "eng2", eng2)  # the later stamp reaches the server first
        await sync_once(node, "eng1", eng1)
        await sync_once(node, "eng2", eng2)
        merged = ["installed", "filter", "belt"]
        for store in (eng1, eng2):
            view = store.record("device", "d-1")
            assert view is not None and view["service_log"] == merged
            assert store.queued() == []
