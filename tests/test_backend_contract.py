"""One contract suite, run against both backends (server/backend/base.py states
the guarantees checked here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from server.backend.base import Backend, Idempotency, PublishRequest
from server.backend.memory import MemoryBackend
from server.backend.redis import RedisBackend
from server.errors import BackendUnavailable, IdempotencyConflict
from server.events import Event, encode_body
from server.offsets import Offset
from tests.support.redis_server import RedisServer
from tests.support.timing import scaled


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reconnects = 0
        self.changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    def on_reconnected(self) -> None:
        self.reconnects += 1
        self.changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(scaled(timeout)):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


LIMITS = {"history_max_events": 5, "history_max_age_s": 3600, "idempotency_ttl_s": 60}


def make_backend(kind: str, redis_url: str | None) -> Backend:
    if kind == "memory":
        return MemoryBackend(**LIMITS)
    assert redis_url is not None
    return RedisBackend(url=redis_url, timeout_s=1.0, history_meta_ttl_s=7200, **LIMITS)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Backend, Sink]]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    sink = Sink()
    backend = make_backend(request.param, redis_url)
    await backend.start(sink)
    try:
        yield backend, sink
    finally:
        await backend.close()


def request(
    *channels: str,
    n: int = 0,
    key: Idempotency | None = None,
    data: dict[str, object] | None = None,
) -> PublishRequest:
    event_id = f"ev{n}"
    body = encode_body(event_id, "k", "normal", data if data is not None else {"n": n})
    return PublishRequest(
        channels=channels, event_id=event_id, priority="normal", body=body, idempotency=key
    )


async def test_offsets_increase_without_holes(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    empty = await store.read("team:a", None, 10)
    assert empty.recovered and empty.top.seq == 0 and empty.events == []
    offsets = [
        Offset.parse((await store.publish(request("team:a", n=n))).offsets["team:a"])
        for n in range(4)
    ]
    assert all(o is not None for o in offsets)
    assert [o.seq for o in offsets if o] == [1, 2, 3, 4]
    assert len({o.epoch for o in offsets if o}) == 1 and offsets[0].epoch == empty.top.epoch  # type: ignore[union-attr]
    assert [o.ms for o in offsets if o] == sorted(o.ms for o in offsets if o)


async def test_read_after_an_offset_and_paging(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    start = (await store.read("team:a", None, 0)).top
    sent = [(await store.publish(request("team:a", n=n))).offsets["team:a"] for n in range(4)]
    history = await store.read("team:a", start, 10)
    assert history.recovered and [e.offset for e in history.events] == sent
    assert history.events[0].fields == {
        "id": "ev0",
        "kind": "k",
        "priority": "normal",
        "data": {"n": 0},
    }
    page = await store.read("team:a", start, 2)
    assert [e.offset for e in page.events] == sent[:2] and str(page.top) == sent[-1]
    rest = await store.read("team:a", page.events[-1].position, 10)
    assert [e.offset for e in rest.events] == sent[2:]
    at_top = await store.read("team:a", Offset.parse(sent[-1]), 10)
    assert at_top.recovered and at_top.events == []


async def test_unrecoverable_offsets(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    first = Offset.parse((await store.publish(request("team:a", n=0))).offsets["team:a"])
    assert first is not None
    offsets = [first]
    for n in range(1, 8):  # history keeps 5: events 1 and 2 are trimmed
        offsets.append(
            Offset.parse((await store.publish(request("team:a", n=n))).offsets["team:a"])
        )
    trimmed = await store.read("team:a", first, 10)
    assert not trimmed.recovered and trimmed.events == [] and trimmed.top.seq == 8
    other_epoch = await store.read("team:a", Offset("elsewhere", first.ms, 1), 10)
    assert not other_epoch.recovered
    ahead = await store.read("team:a", Offset(first.epoch, first.ms, 99), 10)
    assert not ahead.recovered
    inside = await store.read("team:a", offsets[3], 10)
    assert inside.recovered and [e.seq for e in inside.events] == [5, 6, 7, 8]


async def test_idempotent_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    key = Idempotency("disp", "k1", "fingerprint-1")
    first = await store.publish(request("team:a", n=1, key=key))
    again = await store.publish(request("team:a", n=2, key=key))  # a retry gets the first result
    assert not first.duplicate and again.duplicate
    assert (again.id, again.offsets) == (first.id, first.offsets)
    with pytest.raises(IdempotencyConflict):
        await store.publish(request("team:a", n=3, key=Idempotency("disp", "k1", "fingerprint-2")))
    other = await store.publish(
        request("team:a", n=4, key=Idempotency("other", "k1", "fingerprint-1"))
    )
    assert other.id == "ev4"
    assert (await store.read("team:a", None, 0)).top.seq == 2


async def test_multi_channel_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    result = await store.publish(request("team:a", "user:u1", "broadcast", n=1))
    assert set(result.offsets) == {"team:a", "user:u1", "broadcast"}
    for channel, offset in result.offsets.items():
        history = await store.read(channel, Offset.parse(offset.rsplit(":", 1)[0] + ":0-0"), 10)
        assert [e.id for e in history.events] == ["ev1"]
        assert history.events[0].channel == channel


async def test_live_feed_in_order_after_subscribe(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await store.subscribe("team:a")
    for n in range(20):
        await store.publish(request("team:a", "team:not-subscribed", n=n))
    await sink.wait_for(lambda: len([e for e in sink.events if e.channel == "team:a"]) == 20)
    live = [e for e in sink.events if e.channel == "team:a"]
    assert [e.seq for e in live] == list(range(1, 21))
    if isinstance(store, RedisBackend):
        assert all(e.channel == "team:a" for e in sink.events)


async def test_many_concurrent_first_subscriptions(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    channels = [f"user:u{i}" for i in range(300)]
    await asyncio.gather(*(store.subscribe(ch) for ch in channels))
    await store.publish(request(*channels[:100], n=1))
    await asyncio.gather(*(store.publish(request(ch, n=2)) for ch in channels[100:]))
    await sink.wait_for(lambda: len(sink.events) == 300)
    assert {e.channel for e in sink.events} == set(channels)


async def test_redis_outage(tmp_path: Path) -> None:
    """Redis killed: publish fails with BackendUnavailable (never an offset);
    restarted: history is intact and the live feed comes back, reported once."""
    server = RedisServer(tmp_path)
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url)
    await store.start(sink)
    try:
        await store.subscribe("team:a")
        before = await store.publish(request("team:a", n=1))
        server.kill()
        with pytest.raises(BackendUnavailable):
            await store.publish(request("team:a", n=2))
        with pytest.raises(BackendUnavailable):
            await store.read("team:a", None, 0)
        assert not await store.ready()
        server.restart()
        await sink.wait_for(lambda: sink.reconnects == 1, timeout=10)
        assert await store.ready()
        after = await store.publish(request("team:a", n=3))
        await sink.wait_for(lambda: any(e.id == "ev3" for e in sink.events))
        first = Offset.parse(before.offsets["team:a"])
        assert first is not None
        history = await store.read("team:a", Offset(first.epoch, 0, 0), 10)
        assert history.recovered and [e.id for e in history.events] == ["ev1", "ev3"]
        assert str(history.top) == after.offsets["team:a"]
    finally:
        await store.close()
        server.stop()
