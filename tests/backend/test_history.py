"""The history and live-feed guarantees of every backend (fieldpush.backend.base),
run on each kind through the ``backend`` fixture (tests/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from fieldpush.backend.base import Backend, Idempotency
from fieldpush.backend.redis.backend import RedisBackend
from fieldpush.errors import IdempotencyConflict
from fieldpush.events.offsets import Offset
from tests.support.backends import Sink, event_request, publish_event
from tests.support.timing import eventually

# ----------------------------------------------------------------- both backends


async def test_offsets_increase_without_holes(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    empty = await store.read("team:a", None, 10)
    assert empty.recovered and empty.top.seq == 0 and empty.events == []
    offsets = [await publish_event(store, "team:a", n) for n in range(4)]
    assert [o.seq for o in offsets] == [1, 2, 3, 4]
    assert {o.epoch for o in offsets} == {empty.top.epoch}  # the read gave the channel its epoch
    assert [o.ms for o in offsets] == sorted(o.ms for o in offsets)
    assert (await store.read("team:a", None, 10)).top == offsets[-1]


async def test_read_after_an_offset_and_paging(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    start = (await store.read("team:a", None, 0)).top
    sent = [str(await publish_event(store, "team:a", n)) for n in range(4)]
    history = await store.read("team:a", start, 10)
    assert history.recovered and [e.offset for e in history.events] == sent
    assert history.events[0].fields == {
        "id": "ev0",
        "kind": "k",
        "priority": "normal",
        "data": {"n": 0},
    }
    assert history.events[0].priority == "normal" and history.events[0].channel == "team:a"
    page = await store.read("team:a", start, 2)
    assert page.recovered and [e.offset for e in page.events] == sent[:2]
    assert str(page.top) == sent[-1]
    rest = await store.read("team:a", page.events[-1].position, 10)
    assert rest.recovered and [e.offset for e in rest.events] == sent[2:]
    at_top = await store.read("team:a", Offset.parse(sent[-1]), 10)
    assert at_top.recovered and at_top.events == []
    no_room = await store.read("team:a", start, 0)  # the verdict does not depend on the limit
    assert no_room.recovered and no_room.events == []


async def test_unrecoverable_offsets(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    offsets = [
        await publish_event(store, "team:a", n) for n in range(8)
    ]  # history keeps the last 5
    first = offsets[0]
    trimmed = await store.read("team:a", first, 10)
    assert not trimmed.recovered and trimmed.events == [] and trimmed.top.seq == 8
    other_epoch = await store.read("team:a", Offset("elsewhere", first.ms, 1), 10)
    assert not other_epoch.recovered and other_epoch.events == []
    ahead = await store.read("team:a", Offset(first.epoch, first.ms, 99), 10)
    assert not ahead.recovered and ahead.events == []
    inside = await store.read("team:a", offsets[2], 10)  # event 4 is the oldest retained
    assert inside.recovered and [e.seq for e in inside.events] == [4, 5, 6, 7, 8]
    assert not (await store.read("team:a", offsets[1], 10)).recovered


async def test_idempotent_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    key = Idempotency("disp", "k1", "fingerprint-1")
    first = await store.publish(event_request("team:a", "user:u1", n=1, key=key))
    again = await store.publish(event_request("team:a", "user:u1", n=2, key=key))  # a retry
    assert not first.duplicate and again.duplicate
    assert (again.id, again.offsets) == (first.id, first.offsets)
    with pytest.raises(IdempotencyConflict):
        await store.publish(
            event_request("team:a", n=3, key=Idempotency("disp", "k1", "fingerprint-2"))
        )
    other = await store.publish(
        event_request("team:a", n=4, key=Idempotency("other", "k1", "fingerprint-1"))
    )
    assert other.id == "ev4" and not other.duplicate
    # Publisher "a:b" with key "c" is not publisher "a" with key "b:c".
    colon = await store.publish(event_request("team:a", n=5, key=Idempotency("a:b", "c", "f")))
    split = await store.publish(event_request("team:a", n=6, key=Idempotency("a", "b:c", "f")))
    assert not colon.duplicate and not split.duplicate and split.id == "ev6"
    assert (await store.read("team:a", None, 0)).top.seq == 4  # ev1, ev4, ev5, ev6
    assert (await store.read("user:u1", None, 0)).top.seq == 1


async def test_multi_channel_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    channels = ("team:a", "user:u1", "broadcast")
    sent = event_request(*channels, n=1)
    result = await store.publish(sent)
    assert result.id == "ev1" and set(result.offsets) == set(channels)
    for channel, offset in result.offsets.items():
        position = Offset.parse(offset)
        assert position is not None and position.seq == 1
        history = await store.read(channel, Offset(position.epoch, 0, 0), 10)
        assert history.recovered and [e.body for e in history.events] == [sent.body]
        assert history.events[0].channel == channel and history.events[0].offset == offset


async def test_live_feed_in_order_after_subscribe(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await store.subscribe("team:a")
    sent = [(await store.publish(event_request("team:a", "team:other", n=n))) for n in range(20)]
    await eventually(lambda: len(sink.on("team:a")) == 20, message="20 live events")
    live = sink.on("team:a")
    assert [e.offset for e in live] == [r.offsets["team:a"] for r in sent]
    assert [e.id for e in live] == [f"ev{n}" for n in range(20)]
    if isinstance(store, RedisBackend):  # memory delivers every channel of its one process
        assert sink.on("team:other") == []


async def test_many_concurrent_first_subscriptions(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    channels = [f"user:u{i}" for i in range(300)]
    await asyncio.gather(*(store.subscribe(ch) for ch in channels))
    await store.publish(event_request(*channels[:100], n=1))
    await asyncio.gather(*(store.publish(event_request(ch, n=2)) for ch in channels[100:]))
    await eventually(lambda: len(sink.events) == 300, message="an event on each channel")
    assert sorted(e.channel for e in sink.events) == sorted(channels)


async def test_concurrent_subscriptions_of_one_channel(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await asyncio.gather(*(store.subscribe("team:a") for _ in range(5)))
    await store.subscribe("team:a")  # again, once confirmed
    await store.publish(event_request("team:a", n=1))
    await store.publish(event_request("team:a", n=2))
    await eventually(lambda: len(sink.on("team:a")) == 2, message="two live events")
    # A duplicate would arrive before the next event: the feed is in order per channel.
    await store.publish(event_request("team:a", n=3))
    await eventually(lambda: sink.on("team:a")[-1].id == "ev3", message="the marker event")
    assert [e.id for e in sink.on("team:a")][:-1] == ["ev1", "ev2"]
