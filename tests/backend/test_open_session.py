"""``Backend.open_session`` (fieldpush.backend.base.SessionOpener), on each
backend through the ``backend`` fixture: the per-user cap against the live
sessions, and, for an admitted session, its presence, its audience, its reads
and its pending events, all in one step that answers exactly what the separate
calls (``Presence``, ``Ledger``, ``read``) answer."""

from __future__ import annotations

import time

import pytest

from fieldpush.backend.base import (
    Backend,
    ChannelRead,
    DeviceState,
    History,
    PresenceEntry,
    SessionOpening,
    Tracking,
)
from fieldpush.events.offsets import Offset
from tests.support.backends import NODE, Sink, event_request, publish_event
from tests.support.timing import eventually

TTL_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def entry(user: str, session: str, since: int, node: str = NODE) -> PresenceEntry:
    return PresenceEntry(user, session, f"{session}-device", node, since, since)


def summary(history: History) -> tuple[Offset, bool, list[bytes]]:
    """A history by value (events compare by identity)."""
    return history.top, history.recovered, [event.frame(False) for event in history.events]


def opening(
    session: PresenceEntry,
    *,
    channels: list[str] | None = None,
    audience: list[str] | None = None,
    reads: list[ChannelRead] | None = None,
    cap: int = 0,
    refuse_over_cap: bool = True,
) -> SessionOpening:
    return SessionOpening(
        entry=session,
        channels=channels if channels is not None else [f"user:{session.user}"],
        audience=audience or [],
        reads=reads or [],
        cap=cap,
        refuse_over_cap=refuse_over_cap,
    )


@pytest.fixture
async def store(backend: tuple[Backend, Sink]) -> Backend:
    """The backend, with this test's node beating (its sessions count)."""
    await backend[0].presence.beat(NODE, TTL_MS)
    return backend[0]


async def test_an_admitted_session_is_present_on_its_channels(store: Backend) -> None:
    start = now_ms() - 1_000
    first = entry("alice", "a1", start)
    opened = await store.open_session(opening(first, channels=["user:alice", "team:north"]))
    assert opened.admitted and opened.others == [] and opened.pending == []
    second = entry("alice", "a2", start + 1)
    opened = await store.open_session(opening(second, channels=["user:alice"]))
    assert opened.admitted
    assert [(e.session, e.device, e.node, e.since) for e in opened.others] == [
        ("a1", "a1-device", NODE, start)
    ]
    users, _ = await store.presence.of_user("alice")
    assert [e.session for e in users] == ["a1", "a2"]
    assert [e.session for e in await store.presence.of_channel("team:north")] == ["a1"]
    assert sorted(e.session for e in await store.presence.of_channel("user:alice")) == [
        "a1",
        "a2",
    ]


async def test_over_the_cap_a_session_is_refused_and_nothing_is_written(store: Backend) -> None:
    start = now_ms() - 1_000
    for n in range(2):
        session = entry("alice", f"a{n}", start + n)
        assert (await store.open_session(opening(session, cap=2))).admitted
    await publish_event(store, "team:north", 1)
    refused = await store.open_session(
        opening(
            entry("alice", "a9", start + 9),
            channels=["user:alice", "team:north"],
            audience=["team:north"],
            reads=[ChannelRead("team:north", None, 10)],
            cap=2,
        )
    )
    assert not refused.admitted
    assert [e.session for e in refused.others] == ["a0", "a1"]  # oldest first
    assert refused.histories == [] and refused.pending == []
    users, _ = await store.presence.of_user("alice")
    assert [e.session for e in users] == ["a0", "a1"]
    assert await store.presence.of_channel("team:north") == []
    # Its audience was not recorded: a critical event of the team is nobody's.
    await store.publish(
        event_request("team:north", n=2, priority="critical", tracking=Tracking("kind", 0))
    )
    assert await store.ledger.pending("alice") == []


async def test_over_the_cap_with_policy_oldest_the_session_is_admitted(store: Backend) -> None:
    start = now_ms() - 1_000
    assert (await store.open_session(opening(entry("alice", "a0", start), cap=1))).admitted
    newest = entry("alice", "a1", start + 1)
    opened = await store.open_session(opening(newest, cap=1, refuse_over_cap=False))
    assert opened.admitted and [e.session for e in opened.others] == ["a0"]
    users, _ = await store.presence.of_user("alice")
    assert [e.session for e in users] == ["a0", "a1"]  # closing a0 is the caller's part


async def test_sessions_of_a_node_that_stopped_do_not_count(store: Backend) -> None:
    await store.presence.beat("node-b", TTL_MS)
    start = now_ms() - 1_000
    await store.open_session(opening(entry("alice", "b0", start, node="node-b")))
    await store.presence.gone("node-b")
    opened = await store.open_session(opening(entry("alice", "a0", start + 1), cap=1))
    assert opened.admitted and opened.others == []


async def test_audience_reads_and_pending_events_match_the_separate_calls(store: Backend) -> None:
    first = await publish_event(store, "team:north", 1)
    for n in (2, 3, 4):
        await publish_event(store, "team:north", n)
    foreign = Offset("another-epoch", 1, 1)
    reads = [
        ChannelRead("team:north", first, 2),
        ChannelRead("team:north", None, 10),
        ChannelRead("team:south", None, 10),  # never published: gets its epoch now
        ChannelRead("team:north", foreign, 10),
    ]
    opened = await store.open_session(
        opening(entry("alice", "a0", now_ms()), audience=["team:north"], reads=reads)
    )
    assert opened.admitted
    assert [summary(h) for h in opened.histories] == [
        summary(await store.read(r.channel, r.since, r.limit)) for r in reads
    ]
    page = opened.histories[0]
    assert page.recovered and [e.seq for e in page.events] == [2, 3]
    assert not opened.histories[3].recovered
    # The audience is recorded: alice receives the team's next critical event,
    # and a second session of hers finds it pending.
    tracked = await store.publish(
        event_request("team:north", n=5, priority="critical", tracking=Tracking("kind", 0))
    )
    again = await store.open_session(opening(entry("alice", "a1", now_ms())))
    assert [e.id for e in again.pending] == [tracked.id]
    assert [e.frame(False) for e in again.pending] == [
        e.frame(False) for e in await store.ledger.pending("alice")
    ]
    assert again.pending[0].channel == "team:north"


async def test_what_is_published_after_the_step_comes_live_and_in_later_reads(
    backend: tuple[Backend, Sink],
) -> None:
    store, sink = backend
    await store.subscribe("team:north")  # the hub subscribes before the step
    opened = await store.open_session(
        opening(entry("alice", "a0", now_ms()), reads=[ChannelRead("team:north", None, 0)])
    )
    top = opened.histories[0].top
    published = await publish_event(store, "team:north", 1)
    assert published.seq == top.seq + 1 and published.epoch == top.epoch
    await eventually(lambda: sink.on("team:north"), message="the event came live")
    assert [e.offset for e in sink.on("team:north")] == [str(published)]
    later = await store.open_session(
        opening(entry("bob", "b0", now_ms()), reads=[ChannelRead("team:north", top, 10)])
    )
    assert [e.offset for e in later.histories[0].events] == [str(published)]


def from_device(user: str, session: str, device: str, since: int) -> PresenceEntry:
    return PresenceEntry(user, session, device, NODE, since, since)


async def test_each_hello_registers_its_device(store: Backend) -> None:
    before = now_ms()
    first = await store.open_session(
        SessionOpening(
            entry=from_device("alice", "s1", "pixel-7", before),
            channels=[],
            audience=[],
            reads=[],
            cap=0,
            refuse_over_cap=False,
            app="dealer/2.3 fieldpush_client/0.1.0",
        )
    )
    assert first.device is not None
    assert (first.device.device, first.device.node, first.device.app, first.device.state) == (
        "pixel-7",
        NODE,
        "dealer/2.3 fieldpush_client/0.1.0",
        DeviceState.ACTIVE,
    )
    assert before <= first.device.first_seen == first.device.last_seen <= now_ms()
    await eventually(lambda: now_ms() > first.device.last_seen, message="a ms later")  # type: ignore[union-attr]
    again = await store.open_session(
        SessionOpening(
            entry=from_device("alice", "s2", "pixel-7", now_ms()),
            channels=[],
            audience=[],
            reads=[],
            cap=0,
            refuse_over_cap=False,
            app="dealer/2.4 fieldpush_client/0.1.0",
        )
    )
    assert again.device is not None
    assert again.device.first_seen == first.device.first_seen
    assert again.device.last_seen > first.device.last_seen
    assert again.device.app == "dealer/2.4 fieldpush_client/0.1.0"
    assert await store.devices.of_user("alice") == [again.device]
    assert await store.devices.of_user("nobody") == []


async def test_beyond_the_limit_the_device_seen_least_recently_goes(store: Backend) -> None:
    for n, device in enumerate(["old", "mid", "new", "old", "newest"]):
        opened = await store.open_session(
            SessionOpening(
                entry=from_device("bob", f"s{n}", device, now_ms()),
                channels=[],
                audience=[],
                reads=[],
                cap=0,
                refuse_over_cap=False,
                max_devices=3,
            )
        )
        assert opened.admitted
        await eventually(
            lambda d=opened.device: d is not None and now_ms() > d.last_seen, message="a ms later"
        )
    # "mid" was seen least recently when "newest" came ("old" came back after it).
    assert [d.device for d in await store.devices.of_user("bob")] == ["old", "new", "newest"]


async def test_a_refused_hello_registers_no_device(store: Backend) -> None:
    await store.open_session(opening(entry("carl", "c1", now_ms())))
    refused = await store.open_session(opening(entry("carl", "c2", now_ms()), cap=1))
    assert not refused.admitted and refused.device is None
    assert [d.device for d in await store.devices.of_user("carl")] == ["c1-device"]
