"""Presence's guarantees (fieldpush.backend.base.Presence), on each backend
through the ``backend`` fixture (tests/conftest.py): sessions of users and
channels, the last seen time, entries of nodes that stopped, and kicks."""

from __future__ import annotations

import time
from typing import Any

from fieldpush.backend.base import PresenceEntry
from tests.support.backends import NODE, Sink
from tests.support.timing import eventually

TTL_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def entry(user: str, session: str, since: int, node: str = NODE) -> PresenceEntry:
    return PresenceEntry(user, session, f"{session}-device", node, since, since)


def sessions(entries: list[PresenceEntry]) -> list[str]:
    return [e.session for e in entries]


async def test_sessions_of_users_and_channels(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    presence = store.presence
    await presence.beat(NODE, TTL_MS)
    start = now_ms() - 1_000
    a1, a2, b1 = (
        entry("alice", "a1", start),
        entry("alice", "a2", start + 1),
        entry("bob", "b1", start),
    )
    await presence.join(a2, [])
    await presence.join(a1, ["team:north", "broadcast"])
    await presence.join(b1, ["team:north"])
    users, seen = await presence.of_user("alice")
    assert sessions(users) == ["a1", "a2"]  # oldest first
    assert [(e.user, e.device, e.node, e.since) for e in users] == [
        ("alice", "a1-device", NODE, start),
        ("alice", "a2-device", NODE, start + 1),
    ]
    assert all(e.last_seen >= e.since for e in users)
    assert seen is not None and seen >= start  # online: now
    assert sorted(sessions(await presence.of_channel("team:north"))) == ["a1", "b1"]
    assert {e.user for e in await presence.of_channel("team:north")} == {"alice", "bob"}
    assert sessions(await presence.of_channel("broadcast")) == ["a1"]
    await presence.subscribe(a2, "broadcast")
    await presence.unsubscribe(a1, "broadcast")
    assert sessions(await presence.of_channel("broadcast")) == ["a2"]
    assert await presence.of_channel("team:south") == []
    assert await presence.of_user("nobody") == ([], None)  # never seen


async def test_leaving_notes_the_last_seen_time(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    presence = store.presence
    await presence.beat(NODE, TTL_MS)
    start = now_ms() - 1_000
    first, second = entry("alice", "a1", start), entry("alice", "a2", start + 1)
    await presence.join(first, ["team:north"])
    await presence.join(second, ["team:north"])
    closed = PresenceEntry("alice", "a1", "a1-device", NODE, start, now_ms())
    await presence.leave(closed, ["team:north"])
    users, _ = await presence.of_user("alice")
    assert sessions(users) == ["a2"]
    assert sessions(await presence.of_channel("team:north")) == ["a2"]
    await presence.leave(
        PresenceEntry("alice", "a2", "a2-device", NODE, start + 1, now_ms()), ["team:north"]
    )
    users, seen = await presence.of_user("alice")
    assert users == [] and seen is not None and start <= seen <= now_ms()
    assert await presence.of_channel("team:north") == []


async def test_entries_of_a_node_gone_no_longer_count(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    presence = store.presence
    start = now_ms()
    await presence.beat(NODE, TTL_MS)
    await presence.beat("node-b", TTL_MS)
    await presence.join(entry("alice", "a1", start, node="node-b"), ["team:north"])
    await presence.join(entry("bob", "b1", start), ["team:north"])
    assert sorted(sessions(await presence.of_channel("team:north"))) == ["a1", "b1"]
    await presence.gone("node-b")
    assert (await presence.of_user("alice"))[0] == []
    assert sessions(await presence.of_channel("team:north")) == ["b1"]


async def test_entries_of_a_node_that_stops_beating_vanish_after_its_ttl(
    backend: tuple[Any, Sink],
) -> None:
    store, _ = backend
    presence = store.presence
    await presence.beat("node-b", 300)
    await presence.join(entry("alice", "a1", now_ms(), node="node-b"), ["team:north"])
    assert sessions((await presence.of_user("alice"))[0]) == ["a1"]

    async def channel_empty() -> bool:
        return await presence.of_channel("team:north") == []

    await eventually(channel_empty, message="node-b's entries vanished")
    assert (await presence.of_user("alice"))[0] == []


async def test_a_kick_reaches_the_node_of_the_session(backend: tuple[Any, Sink]) -> None:
    store, sink = backend
    await store.presence.kick(NODE, "s1")
    await store.presence.kick(NODE, "s2")
    await eventually(lambda: sink.kicks == ["s1", "s2"], message="both kicks arrived")
