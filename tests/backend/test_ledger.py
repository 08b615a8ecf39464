"""The ledger's guarantees (fieldpush.backend.base.Ledger), on each backend
through the ``backend`` and ``backend_factory`` fixtures (tests/conftest.py):
tracked events pending for their recipients until acked, receipts recorded
once and announced on ``dispatch``, deadlines claimed under a lease, settled
events never claimed again, and records that expire."""

from __future__ import annotations

import time
from typing import Any

from fieldpush.backend.base import (
    Backend,
    PublishResult,
    Receipt,
    ReceiptStep,
    ReceiptStepKind,
    Tracking,
)
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset
from tests.support.backends import BackendFactory, Sink, event_request
from tests.support.timing import eventually, scaled

KIND = "work_order.urgent"


async def track(
    store: Backend, *channels: str, n: int, deadline_ms: int = 0, kind: str = KIND
) -> PublishResult:
    """Publish ``ev<n>`` as a tracked (critical) event."""
    return await store.publish(
        event_request(*channels, n=n, priority="critical", tracking=Tracking(kind, deadline_ms))
    )


def step(kind: str, n: int, user: str, device: str, ms: int, receipt: str) -> ReceiptStep:
    return ReceiptStep(ReceiptStepKind(kind), f"ev{n}", user, device, ms, receipt)


async def dispatch_top(store: Backend) -> Offset:
    return (await store.read("dispatch", None, 0)).top


async def announced(store: Backend, since: Offset) -> list[Event]:
    """The events published to ``dispatch`` after ``since``."""
    history = await store.read("dispatch", since, 100)
    assert history.recovered
    return history.events


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_tracked_event_is_pending_for_its_recipients_until_acked(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    ledger = store.ledger
    await ledger.note_audience([("team:north", "bob"), ("team:north", "carol")])
    sent = await track(store, "user:alice", "team:north", n=1)
    (for_alice,) = await ledger.pending("alice")
    assert (for_alice.id, for_alice.channel) == ("ev1", "user:alice")
    assert for_alice.offset == sent.offsets["user:alice"]  # as published to her channel
    assert for_alice.priority == "critical" and for_alice.fields["data"] == {"n": 1}
    (for_bob,) = await ledger.pending("bob")
    assert (for_bob.id, for_bob.channel) == ("ev1", "team:north")
    assert for_bob.offset == sent.offsets["team:north"]
    assert await ledger.pending("dave") == []  # not in the audience at publish time
    receipts = await ledger.receipts("ev1")
    assert receipts is not None
    assert (receipts.id, receipts.kind, receipts.deadline_at) == ("ev1", KIND, None)
    assert abs(receipts.published_at - now_ms()) < 60_000
    assert receipts.recipients == [Receipt("alice"), Receipt("bob"), Receipt("carol")]
    await ledger.record([step("acked", 1, "bob", "b1", 1_000, "r1")])
    assert await ledger.pending("bob") == []
    assert [e.id for e in await ledger.pending("alice")] == ["ev1"]
    assert [e.id for e in await ledger.pending("carol")] == ["ev1"]


async def test_pending_events_come_oldest_first(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    for n in (1, 2, 3, 4):
        await track(store, "user:alice", n=n)
    await store.publish(event_request("user:alice", n=5, priority="critical"))  # not tracked
    await store.ledger.record([step("acked", 2, "alice", "a1", 1_000, "r1")])
    assert [e.id for e in await store.ledger.pending("alice")] == ["ev1", "ev3", "ev4"]
    assert await store.ledger.receipts("ev5") is None


async def test_first_delivery_and_first_ack_are_recorded_and_announced_once(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    ledger = store.ledger
    await ledger.note_audience([("team:north", "bob")])
    await track(store, "user:alice", "team:north", n=1)
    since = await dispatch_top(store)
    await ledger.record(
        [
            step("delivered", 1, "bob", "b1", 1_002, "r1"),
            step("delivered", 1, "alice", "a1", 1_000, "r2"),
            step("delivered", 1, "alice", "a2", 1_001, "r3"),  # not her first: no change
            step("delivered", 9, "alice", "a1", 1_000, "r4"),  # not tracked: ignored
        ]
    )
    (receipt_event,) = await announced(store, since)
    assert receipt_event.id == "r1"  # the id of the event's first changed step
    assert receipt_event.fields["kind"] == "receipt"
    assert receipt_event.fields["data"] == {
        "event": "ev1",
        "kind": KIND,
        "receipts": [  # sorted by user
            {"user": "alice", "device": "a1", "delivered_at": 1_000, "acked_at": None},
            {"user": "bob", "device": "b1", "delivered_at": 1_002, "acked_at": None},
        ],
    }
    since = (await store.read("dispatch", None, 0)).top
    await ledger.record([step("acked", 1, "alice", "a2", 2_000, "r5")])
    (acked_event,) = await announced(store, since)
    assert acked_event.id == "r5"
    assert acked_event.fields["data"]["receipts"] == [
        {"user": "alice", "device": "a2", "delivered_at": 1_000, "acked_at": 2_000}
    ]  # the device that acked, the time of the first delivery
    receipts = await ledger.receipts("ev1")
    assert receipts is not None
    assert receipts.recipients == [
        Receipt("alice", "a2", 1_000, 2_000),
        Receipt("bob", "b1", 1_002, None),
    ]
    # Idempotent: the same steps again change nothing and announce nothing.
    since = await dispatch_top(store)
    await ledger.record(
        [
            step("delivered", 1, "alice", "a1", 1_000, "r6"),
            step("acked", 1, "alice", "a2", 2_000, "r7"),
            step("acked", 1, "alice", "a3", 3_000, "r8"),
        ]
    )
    assert await announced(store, since) == []
    assert await ledger.receipts("ev1") == receipts
    assert await ledger.receipts("ev9") is None


async def test_a_user_outside_the_audience_is_added_on_first_delivery(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    ledger = store.ledger
    await track(store, "team:north", n=1)  # nobody known on team:north yet
    receipts = await ledger.receipts("ev1")
    assert receipts is not None and receipts.recipients == []
    await ledger.record([step("delivered", 1, "dave", "d1", 1_000, "r1")])
    receipts = await ledger.receipts("ev1")
    assert receipts is not None and receipts.recipients == [Receipt("dave", "d1", 1_000, None)]
    await ledger.record([step("acked", 1, "erin", "e1", 2_000, "r2")])  # first seen acking
    receipts = await ledger.receipts("ev1")
    assert receipts is not None
    assert [r.user for r in receipts.recipients] == ["dave", "erin"]
    assert receipts.recipients[1] == Receipt("erin", "e1", None, 2_000)


async def test_due_events_are_claimed_under_a_lease_and_settled_ones_never_again(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    ledger = store.ledger
    await track(store, "user:u1", n=1, deadline_ms=1)
    await track(store, "user:u2", "user:u3", n=2, deadline_ms=1)
    await track(store, "user:u4", n=3, deadline_ms=1)
    await ledger.record([step("acked", 3, "u4", "d4", 1_000, "r1")])  # acked by everyone
    await track(store, "user:u5", n=4)  # no deadline
    await track(store, "user:u6", n=5, deadline_ms=3_600_000)  # not due for an hour
    await ledger.record([step("acked", 2, "u3", "d3", 1_000, "r2")])
    latest = await ledger.receipts("ev2")
    assert latest is not None and latest.deadline_at is not None
    deadline = latest.deadline_at
    assert deadline == latest.published_at + 1
    await eventually(lambda: now_ms() > deadline + 1, message="the deadlines passed")

    lease_ms = int(scaled(1) * 1000)  # long enough for the next line on a busy machine
    claimed = await ledger.claim_due(lease_ms, 10)
    assert {d.id: (d.kind, d.unacked) for d in claimed} == {
        "ev1": (KIND, ["u1"]),
        "ev2": (KIND, ["u2"]),
    }
    assert await ledger.claim_due(lease_ms, 10) == []  # leased: no other node gets them
    await ledger.settle("ev1")
    # Once ev2's lease ran out it is due again; ev1's ran out with it, but ev1 is settled.
    again = await eventually(
        lambda: ledger.claim_due(60_000, 10), message="ev2 claimable after its lease", timeout=10
    )
    assert [d.id for d in again] == ["ev2"]
    settled = await ledger.receipts("ev1")
    assert settled is not None and settled.recipients == [Receipt("u1")]  # still readable


async def test_claims_are_limited(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    for n in range(5):
        await track(store, f"user:u{n}", n=n, deadline_ms=1)
    last = await store.ledger.receipts("ev4")
    assert last is not None and last.deadline_at is not None
    deadline = last.deadline_at
    await eventually(lambda: now_ms() > deadline + 1, message="the deadlines passed")
    first = await store.ledger.claim_due(60_000, 2)
    rest = await store.ledger.claim_due(60_000, 10)
    assert len(first) == 2 and len(rest) == 3
    assert sorted(d.id for d in first + rest) == [f"ev{n}" for n in range(5)]


async def test_tracking_records_expire_after_the_receipts_ttl(
    backend_factory: BackendFactory,
) -> None:
    async with backend_factory(receipts_ttl_s=0.3) as (store, _):
        await track(store, "user:alice", n=1)
        assert await store.ledger.receipts("ev1") is not None
        assert [e.id for e in await store.ledger.pending("alice")] == ["ev1"]
        await eventually(
            lambda: _is_none(store.ledger.receipts("ev1")), message="the receipts expired"
        )
        assert await store.ledger.pending("alice") == []


async def _is_none(value: Any) -> bool:
    return await value is None
