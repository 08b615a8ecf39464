"""An event's origin is stored with it and restored by every read, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fieldpush.backend.base import Backend, PublishRequest, Tracking
from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.backend.redis.backend import RedisBackend
from fieldpush.events.event import Event, decode_origin, encode_body, encode_origin
from tests.support.timing import scaled

#: Spaces and slashes survive the stored token.
ORIGIN = ("al ice/1", "phone 2/b")


class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Event()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.arrived.set()

    def on_reconnected(self) -> None:
        """Nothing to catch up in these tests."""


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Backend, Sink]]:
    store: Backend
    if request.param == "memory":
        store = MemoryBackend(history_max_events=50, history_max_age_s=3600, idempotency_ttl_s=60)
    else:
        store = RedisBackend(
            url=request.getfixturevalue("redis_url"),
            history_max_events=50,
            history_max_age_s=3600,
            history_meta_ttl_s=7200,
            idempotency_ttl_s=60,
        )
    sink = Sink()
    await store.start(sink)
    try:
        yield store, sink
    finally:
        await store.close()


def request_for(event_id: str, priority: str = "normal", **extra: object) -> PublishRequest:
    body = encode_body(event_id, "record.changed", priority, {"origin": "in the body only"})
    return PublishRequest(("user:alice",), event_id, priority, body, **extra)  # type: ignore[arg-type]


def test_the_origin_token_round_trips() -> None:
    token = encode_origin(ORIGIN)
    assert b" " not in token and token.count(b"/") == 1
    assert decode_origin(token) == ORIGIN


async def test_history_and_the_live_feed_carry_the_origin(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await store.subscribe("user:alice")
    start = (await store.read("user:alice", None, 0)).top
    await store.publish(request_for("with", origin=ORIGIN))
    await store.publish(request_for("without"))
    history = await store.read("user:alice", start, 10)
    assert [(e.id, e.origin) for e in history.events] == [("with", ORIGIN), ("without", None)]
    async with asyncio.timeout(scaled(5)):
        while len(sink.events) < 2:
            sink.arrived.clear()
            await sink.arrived.wait()
    assert [(e.id, e.origin) for e in sink.events] == [("with", ORIGIN), ("without", None)]


async def test_a_pending_critical_event_keeps_its_origin(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    tracking = Tracking("record.changed", 0)
    await store.publish(request_for("c1", "critical", origin=ORIGIN, tracking=tracking))
    await store.publish(request_for("c2", "critical", tracking=tracking))
    pending = await store.ledger.pending("alice")
    assert [(e.id, e.origin) for e in pending] == [("c1", ORIGIN), ("c2", None)]
