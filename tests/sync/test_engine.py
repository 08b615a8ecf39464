"""The sync engine wired from its narrow collaborators (no node, no sockets):
a forged position inside a well-formed cursor is ``bad_request`` on both
record stores, and a realtime change is announced through the publisher it
was given, with the author's ack recorded through the ack recorder."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fieldpush.backend.base import Backend, PublishRequest, PublishResult, RecordStore
from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.backend.memory.devices import MemoryDevices
from fieldpush.errors import InvalidPosition
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.attachments import UploadLookup
from fieldpush.sync.codec import LogCursor, SnapshotCursor, encode_cursor
from fieldpush.sync.engine import SyncEngine, load_sync_config
from fieldpush.sync.errors import SyncError
from fieldpush.sync.rules import Actor
from fieldpush.trail.recorder import AuditRecorder
from fieldpush_client.protocol import ErrorCode, Mutation
from tests.support.backends import Sink

#: Positions no store writes: wrong shape, signs, non-ASCII digits, numbers
#: beyond 64 bits, empty.
FORGED = [
    "",
    "garbage",
    "x:abc:5",
    "e:-1-0",
    "e:1-0:x",
    "e:1-0:-1",
    "e:\u0661-\u0662:\u0663",
    "e: 1-0:1",
    ":99999999999999999999999-0:0",
    "e:1-99999999999999999999999:1",
    "e:1-0:99999999999999999999999",
    "a:b:c:d",
]


class Recorder:
    """A publisher and an ack recorder that remember what they were given."""

    def __init__(self) -> None:
        self.published: list[PublishRequest] = []
        self.acks: list[tuple[str, str, list[str]]] = []

    async def publish(self, request: PublishRequest) -> PublishResult:
        self.published.append(request)
        return PublishResult(request.event_id, {c: "1-0" for c in request.channels})

    def acked(self, user: str, device: str, ids: list[str]) -> asyncio.Future[None]:
        self.acks.append((user, device, ids))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def engine(
    records: RecordStore,
    recorder: Recorder,
    audit: AuditRecorder | None = None,
    uploads: UploadLookup | None = None,
    **settings: Any,
) -> SyncEngine:
    values = Settings(node_id="n1", **settings)
    ids = iter(range(1, 1000))
    return SyncEngine(
        *load_sync_config(values),
        records=records,
        publisher=recorder,
        acked=recorder.acked,
        new_event_id=lambda: f"e{next(ids)}",
        note_skew=MemoryDevices(announce=lambda *_: None).note_skew,
        settings=values,
        metrics=Metrics(gauges={}, catchups=lambda: 0),
        # Not started unless the test starts it: entries wait.
        audit=audit or AuditRecorder(MemoryAudit(), max_pending=10**9),
        uploads=uploads,
    )


@pytest.fixture
def records(backend: tuple[Backend, Sink]) -> RecordStore:
    """The record store of a started backend of each kind (tests/conftest.py)."""
    return backend[0].records


ALICE = Actor("alice", "sales", "phone-1")
CRM = Actor("crm", "service", "crm")


@pytest.mark.parametrize("position", FORGED)
async def test_a_forged_position_is_bad_request(records: RecordStore, position: str) -> None:
    sync = engine(records, Recorder())
    await sync.put_record(CRM, "customer", "c1", {"name": "A", "owner": "alice"})
    with pytest.raises(InvalidPosition):
        await records.read_log(position, 10)
    with pytest.raises(SyncError) as pulled:
        await sync.pull(ALICE, encode_cursor(LogCursor(position)))
    with pytest.raises(SyncError) as fed:
        await sync.feed(encode_cursor(LogCursor(position)), None)
    assert pulled.value.code is fed.value.code is ErrorCode.BAD_REQUEST


async def test_a_snapshot_cursor_is_not_a_feed_cursor(records: RecordStore) -> None:
    sync = engine(records, Recorder())
    with pytest.raises(SyncError) as caught:
        await sync.feed(encode_cursor(SnapshotCursor("0-0", "customer", "")), None)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.message == "invalid cursor: use one from /v1/changes"


async def test_a_critical_change_is_published_and_acked_for_its_author(
    records: RecordStore,
) -> None:
    recorder = Recorder()
    sync = engine(records, recorder, ack_deadlines_s={"record.changed": 30})
    dispatcher = Actor("disp", "dispatcher", "console")
    now = time.time_ns() // 1_000_000
    fields = {"device": "d1", "assignee": "disp", "team": "north", "urgency": "urgent"}
    (result,) = await sync.mutate(
        dispatcher, [Mutation("m1", "work_order", "w1", fields, (now, 0))]
    )
    assert result["status"] == "applied"
    (published,) = recorder.published
    assert published.channels == ("user:disp", "records:north")
    assert published.priority == "critical"
    # Tracked under the kind of the value that made it critical; no deadline is
    # configured for work_order.urgent here, so the one of record.changed applies.
    assert published.tracking is not None and published.tracking.kind == "work_order.urgent"
    assert published.tracking.ack_deadline_ms == 30_000
    assert recorder.acks == [("disp", "console", [published.event_id])]
    again = await sync.mutate(dispatcher, [Mutation("m1", "work_order", "w1", fields, (now, 0))])
    assert again == [result] and len(recorder.published) == 1  # a replay announces nothing


async def test_every_judged_mutation_is_audited_with_its_outcome_and_values(
    records: RecordStore,
) -> None:
    """Applied, refused (field_locked, validation) and replayed mutations: the
    first two are audit entries with old and new values, a replay is none."""
    trail = MemoryAudit()
    audit = AuditRecorder(trail, max_pending=1000)
    audit.start()
    try:
        sync = engine(records, Recorder(), audit)
        disp = Actor("disp", "dispatcher", "console")
        ann = Actor("ann", "after_sales", "phone-1", frozenset({"north"}))
        now = time.time_ns() // 1_000_000
        create = {"device": "d1", "assignee": "ann", "team": "north", "urgency": "normal"}
        await sync.mutate(disp, [Mutation("m1", "work_order", "w1", create, (now, 0))])
        await sync.mutate(disp, [Mutation("m1", "work_order", "w1", create, (now, 0))])
        results = await sync.mutate(
            ann,
            [
                Mutation("m2", "work_order", "w1", {"urgency": "urgent"}, (now + 1, 0)),
                Mutation("m3", "work_order", "w1", {"assignee": "bob"}, (now + 2, 0)),
                Mutation("m4", "nope", "x1", {"a": 1}, (now + 3, 0)),
            ],
        )
        assert [r["status"] for r in results] == ["applied", "rejected", "rejected"]
        await audit.flushed()
        entries = await trail.read(1, 100)
        summary = [(e.actor, e.role, e.device, e.action, e.target, e.outcome) for e in entries]
        assert summary == [
            ("disp", "dispatcher", "console", "sync.write", "work_order/w1", "applied"),
            ("ann", "after_sales", "phone-1", "sync.write", "work_order/w1", "applied"),
            ("ann", "after_sales", "phone-1", "sync.write", "work_order/w1",
             f"rejected:{results[1]['reason']}"),
            ("ann", "after_sales", "phone-1", "sync.write", "nope/x1", "rejected:validation"),
        ]  # fmt: skip
        assert entries[0].fields["assignee"] == [None, "ann"]
        assert entries[1].fields == {"urgency": ["normal", "urgent"]}
        assert entries[2].fields == {"assignee": ["ann", "bob"]}
    finally:
        await audit.close()
