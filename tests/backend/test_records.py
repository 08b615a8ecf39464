"""The record store's guarantees (fieldpush.backend.base.RecordStore), on each
backend through the ``backend_factory`` fixture (tests/conftest.py): atomic
compare-and-set writes applied in order, replays by result key, the change
log's positions, paging and trimming, and the scan in id order."""

from __future__ import annotations

from typing import Any

import pytest

from fieldpush.backend.base import Applied, RecordWrite, Replayed
from fieldpush.errors import InvalidPosition
from tests.support.backends import BackendFactory, Sink, is_stale
from tests.support.redis_server import RedisServer


def log_write(*entries: bytes) -> RecordWrite:
    """A write that only appends to the change log."""
    return RecordWrite(None, b"", None, 0, b"", entries)


async def whole_log(
    store: Any, after: str | None = None, limit: int = 3
) -> list[tuple[str, bytes]]:
    """Every entry after ``after``, read ``limit`` at a time."""
    found: list[tuple[str, bytes]] = []
    while True:
        page, expired = await store.read_log(after, limit)
        assert not expired and len(page) <= limit
        if not page:
            return found
        found += page
        after = page[-1][0]


async def test_store_commits_by_compare_and_set_and_replays_results(
    backend: tuple[Any, Sink],
) -> None:
    store = backend[0].records
    first = RecordWrite("k1", b"r1", "customer:c1", 0, b"state-1", (b"e1",))
    assert await store.commit([first]) == [Applied()]
    assert await store.commit([RecordWrite("k1", b"other", "customer:c1", 1, b"x")]) == [
        Replayed(b"r1")
    ]
    behind = RecordWrite("k2", b"r2", "customer:c1", 0, b"state-x")
    chained = RecordWrite("k3", b"r3", "customer:c1", 1, b"state-y")
    elsewhere = RecordWrite("k4", b"r4", "customer:c2", 0, b"c2-state", (b"e2",))
    statuses = await store.commit([behind, chained, elsewhere])
    assert [is_stale(s) for s in statuses] == [True, True, False] and statuses[2] == Applied()
    records, results = await store.load(
        ["customer:c1", "customer:c2", "customer:c9"], ["k1", "k2", "k4"]
    )
    assert [(r.version, r.blob) if r else None for r in records] == [
        (1, b"state-1"),
        (1, b"c2-state"),
        None,
    ]
    assert results == [b"r1", None, b"r4"]
    check_only = RecordWrite("k5", b"r5", "customer:c1", 1, b"")
    assert await store.commit([check_only]) == [Applied()]
    assert (await store.load(["customer:c1"], []))[0][0].version == 1
    entries, expired = await store.read_log(None, 10)
    assert [e for _, e in entries] == [b"e1", b"e2"] and not expired
    assert await store.log_top() == entries[-1][0]
    after, _ = await store.read_log(entries[0][0], 10)
    assert [e for _, e in after] == [b"e2"]
    assert [rid for rid, _ in await store.scan("customer", "", 10)] == ["c1", "c2"]
    assert [rid for rid, _ in await store.scan("customer", "c1", 10)] == ["c2"]


async def test_writes_of_one_commit_apply_in_order(backend: tuple[Any, Sink]) -> None:
    store = backend[0].records
    statuses = await store.commit(
        [
            RecordWrite("k1", b"r1", "customer:c1", 0, b"v1", (b"e1", b"e2")),
            RecordWrite("k2", b"r2", "customer:c1", 1, b"v2", (b"e3",)),
            RecordWrite(None, b"", None, 0, b"", (b"e4",)),
        ]
    )
    assert statuses == [Applied(), Applied(), Applied()]
    (record,), results = await store.load(["customer:c1"], ["k1", "k2"])
    assert record is not None and (record.version, record.blob) == (2, b"v2")
    assert results == [b"r1", b"r2"]
    assert [e for _, e in await whole_log(store)] == [b"e1", b"e2", b"e3", b"e4"]


async def test_a_write_not_applied_changes_nothing_and_stales_the_later_ones(
    backend: tuple[Any, Sink],
) -> None:
    store = backend[0].records
    assert await store.commit([RecordWrite("k1", b"r1", "customer:c1", 0, b"v1", (b"e1",))]) == [
        Applied()
    ]
    top = await store.log_top()
    statuses = await store.commit(
        [
            RecordWrite("k2", b"r2", "customer:c1", 0, b"lost", (b"lost-entry",)),  # behind
            RecordWrite("k3", b"r3", "customer:c1", 1, b"after-it", (b"after-entry",)),
            RecordWrite("k4", b"r4", "customer:c2", 0, b"other", (b"other-entry",)),
        ]
    )
    assert [is_stale(s) for s in statuses] == [True, True, False] and statuses[2] == Applied()
    # A replay is not applied either: a later write of the call on its record is stale.
    replayed = await store.commit(
        [
            RecordWrite("k1", b"again", "customer:c1", 1, b"v2"),
            RecordWrite("k5", b"r5", "customer:c1", 1, b"v2", (b"replay-entry",)),
        ]
    )
    assert replayed[0] == Replayed(b"r1") and is_stale(replayed[1])
    (c1, c2), results = await store.load(["customer:c1", "customer:c2"], ["k2", "k3", "k5"])
    assert c1 is not None and (c1.version, c1.blob) == (1, b"v1")
    assert c2 is not None and (c2.version, c2.blob) == (1, b"other")
    assert results == [None, None, None]  # no result kept for a write not applied
    assert [e for _, e in await whole_log(store, top)] == [b"other-entry"]


async def test_log_positions_increase_and_pages_neither_lose_nor_repeat(
    backend: tuple[Any, Sink],
) -> None:
    store = backend[0].records
    empty_top = await store.log_top()
    sent = [f"e{n}".encode() for n in range(10)]
    await store.commit([log_write(*sent[:4])])
    await store.commit([log_write(sent[4]), log_write(*sent[5:7])])
    for entry in sent[7:]:
        await store.commit([log_write(entry)])
    entries = await whole_log(store, None, limit=3)
    assert [e for _, e in entries] == sent
    positions = [p for p, _ in entries]
    assert len(set(positions)) == len(positions)
    assert await store.log_top() == positions[-1]
    for index, position in enumerate(positions):  # each position reads exactly the rest
        assert [e for _, e in await whole_log(store, position, limit=4)] == sent[index + 1 :]
    assert [e for _, e in await whole_log(store, empty_top)] == sent  # from the empty log's top
    assert await store.read_log(positions[-1], 10) == ([], False)


async def test_a_read_of_no_entries_answers_none_and_still_says_whether_it_expired(
    backend_factory: BackendFactory,
) -> None:
    """``limit=0`` reads nothing, on an empty, a live and a trimmed log."""
    async with backend_factory(sync_log_max_entries=3) as (backend, _):
        store = backend.records
        assert await store.read_log(None, 0) == ([], False)
        assert await store.read_log(await store.log_top(), 0) == ([], False)
        await store.commit([log_write(b"first")])
        cursor = await store.log_top()
        assert await store.read_log(None, 0) == ([], False)
        assert await store.read_log(cursor, 0) == ([], False)
        for start in range(0, 400, 50):  # Redis trims whole stream nodes
            await store.commit([log_write(*(f"e{n}".encode() for n in range(start, start + 50)))])
        assert await store.read_log(cursor, 0) == ([], True)


async def test_a_malformed_log_position_is_a_value_error(backend: tuple[Any, Sink]) -> None:
    store = backend[0].records
    for position in ("garbage", "a:b:c:d"):
        with pytest.raises(InvalidPosition):
            await store.read_log(position, 10)


async def test_a_trimmed_log_says_so_and_starts_at_the_oldest_retained(
    backend_factory: BackendFactory,
) -> None:
    async with backend_factory(sync_log_max_entries=3) as (backend, _):
        store = backend.records
        await store.commit([log_write(b"first")])
        cursor = await store.log_top()
        sent = [f"e{n}".encode() for n in range(400)]  # Redis trims whole stream nodes
        for start in range(0, 400, 50):
            await store.commit([log_write(*sent[start : start + 50])])
        entries, expired = await store.read_log(cursor, 1000)
        assert expired
        kept = [e for _, e in entries]
        assert kept and kept == sent[-len(kept) :] and len(kept) < len(sent)
        assert (await store.read_log(entries[0][0], 1000)) == (entries[1:], False)


async def test_a_cursor_from_a_lost_log_answers_resync(
    backend_factory: BackendFactory, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    async with backend_factory() as (backend, _):
        store = backend.records
        await store.commit([RecordWrite(None, b"", None, 0, b"", (b"e1",))])
        cursor = await store.log_top()
        _, expired = await store.read_log(cursor, 10)
        assert not expired
        if backend_kind == "memory":  # a new process: a new backend
            async with backend_factory() as (restarted, _):
                fresh = restarted.records
                await fresh.commit([RecordWrite(None, b"", None, 0, b"", (b"after-restart",))])
                entries, expired = await fresh.read_log(cursor, 10)
        else:  # Redis restarted without persistence
            redis_server: RedisServer = request.getfixturevalue("redis_server")
            redis_server.flush()
            await store.commit([RecordWrite(None, b"", None, 0, b"", (b"after-restart",))])
            entries, expired = await store.read_log(cursor, 10)
        assert expired and [e for _, e in entries] == [b"after-restart"]


async def test_scan_lists_a_type_in_id_order_from_after_an_id(backend: tuple[Any, Sink]) -> None:
    store = backend[0].records
    for rid in ("m", "b", "x", "a", "k"):
        assert await store.commit([RecordWrite(None, b"", f"customer:{rid}", 0, rid.encode())]) == [
            Applied()
        ]
    await store.commit([RecordWrite(None, b"", "contract:c", 0, b"contract")])
    await store.commit([RecordWrite(None, b"", "customer:zz", 0, b"")])  # check only: no record
    listed = await store.scan("customer", "", 10)
    assert [rid for rid, _ in listed] == ["a", "b", "k", "m", "x"]
    assert all(r.version == 1 and r.blob == rid.encode() for rid, r in listed)
    assert [rid for rid, _ in await store.scan("customer", "", 2)] == ["a", "b"]
    assert [rid for rid, _ in await store.scan("customer", "b", 2)] == ["k", "m"]
    assert [rid for rid, _ in await store.scan("customer", "c", 10)] == ["k", "m", "x"]
    assert await store.scan("customer", "x", 10) == []
    assert [rid for rid, _ in await store.scan("contract", "", 10)] == ["c"]
    assert await store.scan("lorry", "", 10) == []


async def test_applied_writes_index_their_file_ids_to_the_record(
    backend: tuple[Any, Sink],
) -> None:
    store = backend[0].records
    assert await store.file_records("f1") == []
    first = RecordWrite("k1", b"r1", "follow_up:a", 0, b"s1", (), ("f1", "f2"))
    other = RecordWrite("k2", b"r2", "device:b", 0, b"s2", (), ("f1",))
    assert await store.commit([first, other]) == [Applied(), Applied()]
    stale = RecordWrite("k3", b"r3", "work_order:c", 5, b"s3", (), ("f1", "f3"))
    assert is_stale((await store.commit([stale]))[0])
    replay = RecordWrite("k1", b"r1", "work_order:d", 0, b"s4", (), ("f1",))
    assert await store.commit([replay]) == [Replayed(b"r1")]
    assert await store.file_records("f1") == ["device:b", "follow_up:a"]
    assert await store.file_records("f2") == ["follow_up:a"]
    assert await store.file_records("f3") == []  # a write not applied indexes nothing
    again = RecordWrite("k5", b"r5", "follow_up:a", 1, b"s5", (), ())
    assert await store.commit([again]) == [Applied()]
    assert await store.file_records("f2") == ["follow_up:a"]  # a superset: kept
