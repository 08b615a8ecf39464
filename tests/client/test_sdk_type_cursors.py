"""Per-type-set cursors in the SDK (issue 13, item 3), against a real node:
pulls of different type sets on one store never skip each other's changes."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldpush_client import PushClient, SyncClient, SyncStore
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.stores import STORE_KEY
from tests.support.timing import scaled

#: The type sets the phone's pulls use: everything, the poll class, the core types.
FILTERS: list[tuple[str, ...] | None] = [None, ("visit_plan",), ("customer", "contact")]
TYPES = ("customer", "contact", "visit_plan")


def client_for(node: RunningNode) -> PushClient:
    return PushClient(node.ws_url, token=node.token("alice", "sales", ("north",)), device="p")


async def crm_write(node: RunningNode, record_type: str, rid: str, value: int) -> None:
    """A CRM write of one of the test's types; odd values hand the record to bob."""
    owner = "bob" if value % 2 else "alice"
    if record_type == "customer":
        await node.crm_put("customer", rid, name=f"N{value}", owner=owner, team="north")
    elif record_type == "contact":
        await node.crm_put(
            "contact", rid, customer="c0", name=f"P{value}", owner=owner, phone=f"+49 {value}"
        )
    else:
        await node.crm_put("visit_plan", rid, owner=owner, date="2026-03-01", customers=[rid])


async def server_view(node: RunningNode, tmp: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """What a fresh store downloads: the server's state as alice may read it."""
    fresh = SyncStore(tmp / "fresh.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, fresh, auto=False) as sync:
        await client.wait_connected(scaled(5))
        await sync.pull()
    view = {record_type: fresh.records(record_type) for record_type in TYPES}
    fresh.close()
    return view


async def test_a_visit_plan_pull_after_a_core_pull_downloads_the_existing_plan(
    tmp_path: Path,
) -> None:
    """The defect: with one cursor, the visit-plan pull continued the core
    pull's cursor and never downloaded the plan that existed before it; the
    core pull then skipped the phone number changed meanwhile."""
    async with running_node(node_settings()) as node:
        await node.crm_put("customer", "c1", name="ACME", owner="alice", team="north")
        await node.crm_put("visit_plan", "v1", owner="alice", date="2026-03-01")
        store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
        async with (
            client_for(node) as client,
            SyncClient(client, store, types=["customer", "contact"], auto=False) as core,
            SyncClient(client, store, types=["visit_plan"], auto=False) as plans,
        ):
            await client.wait_connected(scaled(5))
            await core.pull()
            await node.crm_put("customer", "c1", phone="+49 5")
            await plans.pull()
            assert store.records("visit_plan")["v1"]["date"] == "2026-03-01"
            await core.pull()
            assert store.record("customer", "c1") == {
                "name": "ACME",
                "owner": "alice",
                "team": "north",
                "phone": "+49 5",
            }
            assert store.cursor_for(["visit_plan"]) != store.cursor_for(["contact", "customer"])
            assert store.cursor_for(["contact", "customer", "customer"]) == store.cursor_for(
                ["customer", "contact"]
            )
            assert store.cursor is None  # no pull of every type yet


Step = tuple[str, int, int]  # ("crm", type index, value) or ("pull", filter index, 0)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("crm"), st.integers(0, 5), st.integers(0, 9)),
        st.tuples(st.just("pull"), st.integers(0, len(FILTERS) - 1), st.just(0)),
    ),
    max_size=14,
)


async def interleave(ops: Sequence[Step], order: Sequence[int], tmp: Path) -> None:
    async with running_node(node_settings()) as node:
        await node.crm_put("customer", "c0", name="Base", owner="alice", team="north")
        store = SyncStore(tmp / "phone.db", key=STORE_KEY)
        async with client_for(node) as client:
            # One SyncClient per type set on one store, as an app has them
            # (the visit plans on their poll schedule, the core types on connect).
            syncs = [
                SyncClient(client, store, types=types, page_size=2, auto=False) for types in FILTERS
            ]
            await client.wait_connected(scaled(5))
            for kind, which, value in ops:
                if kind == "crm":
                    record_type = TYPES[which % len(TYPES)]
                    await crm_write(node, record_type, f"{record_type[0]}{which // 3}", value)
                else:
                    await syncs[which].pull()
            for which in order:  # every set pulls once more, in some order
                await syncs[which].pull()
        expected = await server_view(node, tmp)
        assert {t: store.records(t) for t in TYPES} == expected
        store.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=steps, order=st.permutations(range(len(FILTERS))))
def test_any_mix_of_filtered_and_unfiltered_pulls_converges(
    ops: list[Step], order: list[int]
) -> None:
    """Property: whatever CRM writes (creations, changes, hand-overs out of
    the phone's scope and back) and pulls of whichever type sets interleave,
    once each set has pulled again the store holds what the server holds."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(interleave(ops, order, Path(tmp)))
