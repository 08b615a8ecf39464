"""Drift digests through a real node on both backends (docs/sync.md, "Data
drift"; docs/protocol.md 3.8): compared only when the pull is caught up, the
repair of the differing buckets, what is counted, and hostile digests and
repairs refused with ``bad_request`` while nothing stored changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fieldpush_client.protocol import MAX_REPAIR_HELD, Digest, bucket_of, record_hash
from tests.support import scrape
from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import Phone, phone
from tests.support.timing import scaled

ALICE = {f"c{n}": {"name": f"C{n}", "budget": n} for n in range(12)}
ZERO = "0" * 16


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    """A node on each backend with alice's customers and one of bob's."""
    async with start_node(sync_drift_interval_s=0) as running:
        for rid, fields in ALICE.items():
            await running.crm_put("customer", rid, owner="alice", team="north", **fields)
        await running.crm_put("customer", "c-bob", name="Bolt", owner="bob", team="north")
        yield running


def digest_of(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    total = Digest()
    for rid, fields in records.items():
        total = total.add(record_hash(rid, fields))
    return total.to_wire()


async def full_download(alice: Phone) -> tuple[dict[str, dict[str, Any]], str]:
    """Alice's customers as a full download gives them, and the cursor after."""
    held: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        message: dict[str, Any] = {"type": "pull", "id": 1, "types": ["customer"]}
        if cursor is not None:
            message["cursor"] = cursor
        page = await alice.request(message)
        assert page["type"] == "changes", page
        held.update({c["rid"]: c["fields"] for c in page["changes"]})
        cursor = page["cursor"]
        if not page["more"]:
            return held, cursor


async def pull(alice: Phone, cursor: str, **extra: Any) -> dict[str, Any]:
    return await alice.request(
        {"type": "pull", "id": 7, "cursor": cursor, "types": ["customer"], **extra}
    )


def drift_lines(node: RunningNode) -> list[str]:
    return scrape.lines(
        node.node.metrics.render(), "fieldpush_drift_records_total", "fieldpush_devices_drifting"
    )


async def test_a_digest_is_compared_once_the_pull_is_caught_up(node: RunningNode) -> None:
    async with phone(node, "alice", teams=("north",), device="a-phone") as alice:
        held, cursor = await full_download(alice)
        assert set(held) == set(ALICE)
        right = {"customer": digest_of(held)}

        agreed = await pull(alice, cursor, digest=right)
        assert agreed["changes"] == [] and agreed["drift"] == {
            "compared": ["customer"],
            "differs": {},
        }

        await node.crm_put("customer", "c3", name="Renamed")
        lagging = await pull(alice, cursor, digest=right)  # a change to send: lag, not drift
        assert [c["rid"] for c in lagging["changes"]] == ["c3"] and "drift" not in lagging
        assert drift_lines(node) == ["fieldpush_devices_drifting 0"]

        held["c3"] = {**held["c3"], **lagging["changes"][0]["fields"]}
        caught_up = await pull(alice, lagging["cursor"], digest={"customer": digest_of(held)})
        assert caught_up["drift"]["differs"] == {}

        wrong = dict(held)
        del wrong["c5"]
        answer = await pull(alice, lagging["cursor"], digest={"customer": digest_of(wrong)})
        differs = answer["drift"]["differs"]["customer"]
        assert (differs["count"], differs["hash"]) == (12, digest_of(held)["hash"])
        buckets = differs["buckets"]
        assert sum(count for count, _ in buckets.values()) == 12
        ours = Digest().add(record_hash("c5", held["c5"]))
        assert buckets[str(bucket_of("c5"))] != [0, ZERO]
        assert ours.count == 1
        assert drift_lines(node) == ["fieldpush_devices_drifting 1"]  # no records counted yet


async def test_a_repair_answers_what_differs_in_its_buckets_and_counts_it(
    node: RunningNode,
) -> None:
    async with phone(node, "alice", teams=("north",), device="a-phone") as alice:
        held, cursor = await full_download(alice)
        changed = {**held["c1"], "budget": 999}
        buckets = sorted({bucket_of("c1"), bucket_of("c2"), bucket_of("c-bob")})
        listed = {
            rid: fields for rid, fields in held.items() if bucket_of(rid) in buckets and rid != "c2"
        }
        listed["c1"] = changed
        listed["c-bob"] = {"name": "Bolt"}  # a record it should not hold
        repair = {
            "customer": {
                "buckets": buckets,
                "held": {rid: f"{record_hash(rid, f):016x}" for rid, f in listed.items()},
            }
        }
        compared = await pull(alice, cursor, digest={"customer": digest_of(listed)})
        assert "customer" in compared["drift"]["differs"]
        answer = await pull(alice, cursor, repair=repair)
        assert answer["type"] == "changes" and answer["repair"] is True
        by_rid = {c["rid"]: c for c in answer["changes"]}
        assert by_rid["c1"]["fields"] == held["c1"]  # whole, the server's values
        assert by_rid["c2"]["fields"] == held["c2"]
        assert by_rid["c-bob"] == {
            "type": "customer",
            "rid": "c-bob",
            "fields": {},
            "removed": True,
        }
        assert len(by_rid) == 3
        assert drift_lines(node) == [
            "fieldpush_devices_drifting 1",
            'fieldpush_drift_records_total{type="customer"} 3',
        ]
        devices = await admin_devices(node)
        assert [d["drift"]["customer"]["records"] for d in devices] == [3]

        clean = await pull(
            alice,
            cursor,
            repair={
                "customer": {
                    "buckets": [0],
                    "held": {
                        rid: f"{record_hash(rid, f):016x}"
                        for rid, f in held.items()
                        if bucket_of(rid) == 0
                    },
                }
            },
        )
        assert clean["changes"] == [] and clean["repair"] is True
        assert drift_lines(node)[0] == "fieldpush_devices_drifting 1"  # it did differ
        agreed = await pull(alice, cursor, digest={"customer": digest_of(held)})
        assert agreed["drift"]["differs"] == {}
        assert drift_lines(node)[0] == "fieldpush_devices_drifting 0"

        # A comparison that differed by a commit made meanwhile: the repair finds nothing.
        await pull(alice, cursor, digest={"customer": digest_of({})})
        assert drift_lines(node)[0] == "fieldpush_devices_drifting 1"
        await pull(
            alice,
            cursor,
            repair={
                "customer": {
                    "buckets": [0],
                    "held": {
                        rid: f"{record_hash(rid, f):016x}"
                        for rid, f in held.items()
                        if bucket_of(rid) == 0
                    },
                }
            },
        )
        assert drift_lines(node)[0] == "fieldpush_devices_drifting 0"


async def admin_devices(node: RunningNode) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {node.token('root', 'admin')}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        answer = await http.get("/v1/admin/users/alice/devices", headers=headers)
    assert answer.status_code == 200, answer.text
    devices: list[dict[str, Any]] = answer.json()
    return devices


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("a huge count", {"digest": {"customer": {"count": 10**30, "hash": ZERO}}}),
    ("a negative count", {"digest": {"customer": {"count": -1, "hash": ZERO}}}),
    ("a count as text", {"digest": {"customer": {"count": "3", "hash": ZERO}}}),
    ("a count that is true", {"digest": {"customer": {"count": True, "hash": ZERO}}}),
    ("a hash that is a number", {"digest": {"customer": {"count": 1, "hash": 12345}}}),
    ("a hash not hex", {"digest": {"customer": {"count": 1, "hash": "not-a-number!!!"}}}),
    ("a hash in capitals", {"digest": {"customer": {"count": 1, "hash": "ABCDEF0123456789"}}}),
    ("a deep structure", {"digest": {"customer": {"count": _deep(20), "hash": ZERO}}}),
    ("a list", {"digest": [["customer", 1, ZERO]]}),
    ("text", {"digest": "customer"}),
    ("an extra key", {"digest": {"customer": {"count": 1, "hash": ZERO, "x": 1}}}),
    (
        "thousands of types",
        {"digest": {f"t{n}": {"count": 0, "hash": ZERO} for n in range(1200)}},
    ),
    ("an unknown type", {"digest": {"spaceship": {"count": 0, "hash": ZERO}}}),
    ("the batch class", {"digest": {"customer": {"count": 0, "hash": ZERO}}, "classes": ["batch"]}),
    ("a bucket out of range", {"repair": {"customer": {"buckets": [256], "held": {}}}}),
    ("no bucket", {"repair": {"customer": {"buckets": [], "held": {}}}}),
    ("a bucket as text", {"repair": {"customer": {"buckets": ["1"], "held": {}}}}),
    (
        "a rid of another bucket",
        {"repair": {"customer": {"buckets": [(bucket_of("c1") + 1) % 256], "held": {"c1": ZERO}}}},
    ),
    (
        "too many held",
        {
            "repair": {
                "customer": {
                    "buckets": list(range(256)),
                    "held": {f"r{n}": ZERO for n in range(MAX_REPAIR_HELD + 1)},
                }
            }
        },
    ),
    (
        "a held hash not hex",
        {"repair": {"customer": {"buckets": [bucket_of("c1")], "held": {"c1": "x"}}}},
    ),
    ("a repair of an unknown type", {"repair": {"spaceship": {"buckets": [1], "held": {}}}}),
]


@pytest.mark.parametrize("extra", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_a_hostile_digest_or_repair_is_a_bad_request_and_changes_nothing(
    node: RunningNode, extra: dict[str, Any]
) -> None:
    async with (
        phone(node, "alice", teams=("north",), device="a-phone") as alice,
        phone(node, "alice", teams=("north",), device="a-tablet") as tablet,
    ):
        held, cursor = await full_download(alice)
        answer = await pull(alice, cursor, **extra)
        assert answer["type"] == "error" and answer["code"] == "bad_request", answer
        assert answer["id"] == 7
        # The connection carries on, and so does the other device.
        again = await pull(alice, cursor, digest={"customer": digest_of(held)})
        assert again["drift"]["differs"] == {}
        assert (await full_download(tablet))[0] == held
    headers = {"Authorization": f"Bearer {node.token('alice', 'sales', ('north',))}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        body = {"cursor": cursor, "types": ["customer"], **extra}
        refused = await http.post("/v1/sync/pull", json=body, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid"
    assert drift_lines(node) == ["fieldpush_devices_drifting 0"]
    assert [d.get("drift") for d in await admin_devices(node)] == [{}, {}]


async def test_a_device_is_compared_once_per_interval_and_repairs_only_what_differed(
    start_node: NodeFactory,
) -> None:
    async with start_node(sync_drift_interval_s=3600) as node:
        for rid, fields in ALICE.items():
            await node.crm_put("customer", rid, owner="alice", team="north", **fields)
        async with (
            phone(node, "alice", teams=("north",), device="a-phone") as alice,
            phone(node, "alice", teams=("north",), device="a-tablet") as tablet,
        ):
            _, cursor = await full_download(alice)
            bucket = bucket_of("c1")
            repair = {"customer": {"buckets": [bucket], "held": {}}}
            ignored = await pull(alice, cursor, repair=repair)  # never compared: no repair
            assert "repair" not in ignored and ignored["changes"] == []
            wrong = {"customer": digest_of({})}
            assert "differs" in (await pull(alice, cursor, digest=wrong))["drift"]
            assert "drift" not in await pull(alice, cursor, digest=wrong)  # within the interval
            assert "drift" in await pull(tablet, cursor, digest=wrong)  # another device
            for _ in range(32):
                assert (await pull(alice, cursor, repair=repair))["repair"] is True
            assert "repair" not in await pull(alice, cursor, repair=repair)  # past its repairs
