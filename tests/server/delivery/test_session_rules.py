"""The session's rules without sockets: rate limit, outbox priorities, subscriptions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from fieldpush.delivery.outbox import Dirty, Outbox
from fieldpush.delivery.rules import (
    Rate,
    RateLimit,
    plan_subscriptions,
    refresh_due_at,
    refuse_refresh,
    refuse_subscribe,
    refuse_unsubscribe,
    revoked_channels,
    welcome,
)
from fieldpush.events.event import Event, encode_body
from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import ErrorCode

# ----------------------------------------------------------------- rate limit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_a_burst_then_refuses() -> None:
    clock = Clock()
    limit = RateLimit(per_s=2, burst=3, clock=clock)
    assert [limit.take() for _ in range(3)] == [Rate.ALLOWED] * 3
    assert limit.take() is Rate.REFUSED
    assert limit.strikes == 1


def test_the_bucket_refills_at_its_rate_up_to_the_burst() -> None:
    clock = Clock()
    limit = RateLimit(per_s=2, burst=3, clock=clock)
    for _ in range(3):
        limit.take()
    clock.now += 0.5  # one token
    assert limit.take() is Rate.ALLOWED
    assert limit.take() is Rate.REFUSED
    clock.now += 60  # refills to the burst, no further
    assert [limit.take() for _ in range(4)] == [Rate.ALLOWED] * 3 + [Rate.REFUSED]


def test_more_refusals_in_a_row_than_the_burst_close_and_an_allowed_message_resets() -> None:
    clock = Clock()
    limit = RateLimit(per_s=1, burst=2, clock=clock)
    limit.take()
    limit.take()
    assert [limit.take() for _ in range(2)] == [Rate.REFUSED, Rate.REFUSED]
    clock.now += 1
    assert limit.take() is Rate.ALLOWED
    assert limit.strikes == 0
    assert [limit.take() for _ in range(3)] == [Rate.REFUSED, Rate.REFUSED, Rate.CLOSE]


# --------------------------------------------------------------------- outbox


@dataclass
class Handle:
    delay_s: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Scheduler:
    """The flusher's decisions, recorded; ``recent`` says a write was recent."""

    recent: bool = False
    now: list[Outbox] = field(default_factory=list)
    later: list[Outbox] = field(default_factory=list)
    timers: list[Handle] = field(default_factory=list)

    def coalesces(self, flushed_at: float) -> bool:
        return self.recent

    def add(self, outbox: Outbox) -> None:
        self.now.append(outbox)

    def add_later(self, outbox: Outbox) -> None:
        self.later.append(outbox)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(delay_s, callback)
        self.timers.append(handle)
        return handle


@dataclass
class Sink:
    frames: list[bytes] = field(default_factory=list)
    closing: bool = False

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def ids(self) -> list[list[str]]:
        """The event ids of each frame written (JSON frames, unmasked, short)."""
        out = []
        for frame in self.frames:
            length = frame[1]
            payload = json.loads(frame[4:] if length == 126 else frame[2:])
            items = payload["events"] if payload["type"] == "events" else [payload]
            out.append([item["id"] for item in items])
        return out


_seq = iter(range(1, 1_000_000))


def event(priority: str, event_id: str, origin: tuple[str, str] | None = None) -> Event:
    seq = next(_seq)
    body = encode_body(event_id, "k", priority, {})
    return Event("user:alice", "ep", 1000 + seq, seq, priority, body, origin)


def make_outbox(recent: bool = False) -> tuple[Outbox, Scheduler, Sink, list[str]]:
    scheduler, sink, delivered = Scheduler(recent=recent), Sink(), []
    outbox = Outbox(
        sink,
        False,
        scheduler,
        on_critical=delivered.append,
        low_interval_s=300,
        max_held=3,
    )
    return outbox, scheduler, sink, delivered


def test_critical_and_high_are_written_at_once() -> None:
    for priority in ("critical", "high"):
        outbox, scheduler, _, _ = make_outbox(recent=True)
        outbox.push(event(priority, "e"))
        assert scheduler.now == [outbox] and not scheduler.later
        assert outbox.dirty is Dirty.NOW


def test_a_lone_normal_event_goes_at_once_and_one_after_a_recent_write_waits() -> None:
    outbox, scheduler, _, _ = make_outbox(recent=False)
    outbox.push(event("normal", "a"))
    assert scheduler.now == [outbox] and outbox.dirty is Dirty.NOW
    outbox, scheduler, _, _ = make_outbox(recent=True)
    outbox.push(event("normal", "a"))
    outbox.push(event("normal", "b"))
    assert scheduler.later == [outbox] and not scheduler.now  # registered once
    assert outbox.dirty is Dirty.WINDOW


def test_an_urgent_event_takes_the_waiting_normal_ones_along() -> None:
    outbox, scheduler, sink, _ = make_outbox(recent=True)
    outbox.push(event("normal", "a"))
    outbox.push(event("high", "b"))
    assert scheduler.now == [outbox]
    assert outbox.flush([]) == 2
    assert sink.ids() == [["a", "b"]]
    assert outbox.dirty is Dirty.CLEAN


def test_low_events_are_held_until_the_next_non_low_and_go_ahead_of_it() -> None:
    outbox, scheduler, sink, _ = make_outbox()
    outbox.push(event("low", "l1"))
    outbox.push(event("low", "l2"))
    assert not scheduler.now and not scheduler.later
    assert [timer.delay_s for timer in scheduler.timers] == [300]
    outbox.push(event("normal", "n"))
    assert scheduler.timers[0].cancelled
    outbox.flush([])
    assert sink.ids() == [["l1", "l2", "n"]]


def test_low_events_go_when_the_interval_passes() -> None:
    outbox, scheduler, sink, _ = make_outbox()
    outbox.push(event("low", "l1"))
    scheduler.timers[0].callback()
    assert scheduler.now == [outbox]
    outbox.flush([])
    assert sink.ids() == [["l1"]]


def test_too_many_held_low_events_go_at_once() -> None:
    outbox, scheduler, _, _ = make_outbox()
    for index in range(4):
        outbox.push(event("low", f"l{index}"))
    assert scheduler.now == [outbox]
    assert outbox.pending == 4 and outbox.held is None


def test_a_critical_event_is_written_at_most_once_per_connection() -> None:
    outbox, _, sink, delivered = make_outbox()
    critical = event("critical", "c")
    page = outbox.replayable([critical, event("normal", "n")], origin=None)
    assert [e.id for e in page] == ["c", "n"]
    outbox.push(critical)  # the same event live after the replay
    assert outbox.first_critical(critical) is False  # and from the pending list
    assert outbox.flush([]) == 0
    assert delivered == ["c"]
    assert sink.frames == []


def test_a_replay_skips_the_connections_own_record_changes() -> None:
    outbox, _, _, _ = make_outbox()
    own, other = ("alice", "phone"), ("alice", "tablet")
    page = [event("normal", "a", own), event("normal", "b", other), event("normal", "c")]
    assert [e.id for e in outbox.replayable(page, own)] == ["b", "c"]


def test_nothing_is_written_to_a_closing_connection() -> None:
    outbox, _, sink, _ = make_outbox()
    outbox.push(event("high", "h"))
    sink.closing = True
    assert outbox.flush([]) == 0
    assert sink.frames == [] and outbox.pending == 0


def test_discard_stops_the_low_timer_and_drops_what_waits() -> None:
    outbox, scheduler, _, _ = make_outbox()
    outbox.push(event("low", "l"))
    outbox.push(event("high", "h"))
    outbox.push(event("low", "l2"))
    outbox.discard()
    assert scheduler.timers[-1].cancelled
    assert outbox.pending == 0 and outbox.held is None


# -------------------------------------------------------------- subscriptions

ALICE = Identity(user="alice", role="sales", teams=frozenset({"north"}), expires_at=0)


def test_hello_subscriptions_put_the_own_channel_first_and_refuse_the_forbidden() -> None:
    plan = plan_subscriptions(
        ALICE, {"team:north": "ep:0-0", "team:south": None, "broadcast": None}, limit=10
    )
    assert plan.allowed == ["user:alice", "team:north", "broadcast"]
    assert plan.refused == ["team:south"]
    assert plan.wanted["team:north"] == "ep:0-0"


def test_hello_subscriptions_beyond_the_limit_are_refused_but_the_own_channel_fits() -> None:
    plan = plan_subscriptions(ALICE, {"team:north": None, "broadcast": None}, limit=1)
    assert plan.allowed == ["user:alice"]
    assert plan.refused == ["team:north", "broadcast"]


def test_subscribe_refusals() -> None:
    subscribed = {"user:alice", "team:north"}
    refusal = refuse_subscribe(ALICE, "team:north", subscribed, limit=10)
    assert refusal is not None and refusal.code is ErrorCode.BAD_REQUEST
    refusal = refuse_subscribe(ALICE, "broadcast", subscribed, limit=2)
    assert refusal is not None and refusal.code is ErrorCode.FORBIDDEN
    assert "at most 2" in refusal.message
    refusal = refuse_subscribe(ALICE, "team:south", subscribed, limit=10)
    assert refusal is not None and refusal.code is ErrorCode.FORBIDDEN
    assert refuse_subscribe(ALICE, "broadcast", subscribed, limit=10) is None


def test_unsubscribe_refusals() -> None:
    subscribed = {"user:alice", "team:north"}
    assert refuse_unsubscribe(ALICE, "user:alice", subscribed) is not None
    assert refuse_unsubscribe(ALICE, "broadcast", subscribed) is not None
    assert refuse_unsubscribe(ALICE, "team:north", subscribed) is None


def test_welcome_lists_every_channel_in_the_order_asked() -> None:
    plan = plan_subscriptions(ALICE, {"team:south": None, "team:north": "ep:0-3"}, limit=10)
    message = welcome(
        session="s1",
        identity=ALICE,
        node="n1",
        heartbeat_s=25,
        poll={"low": 300},
        plan=plan,
        opened={"user:alice": ("ep:0-0", True), "team:north": ("ep:0-9", False)},
    )
    assert message.to_wire() == {
        "type": "welcome",
        "session": "s1",
        "user": "alice",
        "role": "sales",
        "node": "n1",
        "heartbeat_s": 25,
        "poll": {"low": 300},
        "subs": {
            "user:alice": {"offset": "ep:0-0", "recovered": True},
            "team:south": {"error": "forbidden"},
            "team:north": {"offset": "ep:0-9", "recovered": False},
        },
    }
    assert list(message.subs) == ["user:alice", "team:south", "team:north"]


# ------------------------------------------------------------ token refresh


def test_refresh_is_due_the_lead_before_exp_but_not_before_half_the_lifetime_left() -> None:
    assert refresh_due_at(expires_at=1000, now=100, lead_s=60) == 940
    assert refresh_due_at(expires_at=160, now=100, lead_s=60) == 130  # half of 60 s left
    assert refresh_due_at(expires_at=90, now=100, lead_s=60) == 100  # already past exp: now


def test_a_refresh_must_keep_the_user() -> None:
    promoted = Identity(user="alice", role="admin", teams=frozenset(), expires_at=9)
    assert refuse_refresh(ALICE, promoted) is None
    bob = Identity(user="bob", role="sales", teams=frozenset({"north"}), expires_at=9)
    refusal = refuse_refresh(ALICE, bob)
    assert refusal is not None and refusal.code is ErrorCode.UNAUTHORIZED


def test_revoked_channels_are_those_the_new_identity_may_not_read() -> None:
    subscribed = ["user:alice", "team:north", "team:south", "broadcast", "dispatch"]
    assert revoked_channels(ALICE, subscribed) == ["team:south", "dispatch"]
