"""Kick requests reach the handler the node's presence tracker registered."""

from __future__ import annotations

import asyncio

from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.backend.redis.backend import RedisBackend
from fieldpush.events.event import Event
from tests.support.timing import scaled


class Sink:
    def on_event(self, event: Event) -> None:
        """Not used here."""

    def on_reconnected(self) -> None:
        """Not used here."""


def redis_backend(url: str) -> RedisBackend:
    return RedisBackend(
        url=url,
        history_max_events=5,
        history_max_age_s=60,
        history_meta_ttl_s=60,
        idempotency_ttl_s=60,
    )


async def test_a_kick_for_another_node_reaches_its_handler_on_redis(redis_url: str) -> None:
    here, there = redis_backend(redis_url), redis_backend(redis_url)
    kicked: asyncio.Queue[str] = asyncio.Queue()
    there.presence.on_kick("node-b", kicked.put_nowait)
    await here.start(Sink())
    await there.start(Sink())
    try:
        await here.presence.kick("node-b", "session-1")
        await here.presence.kick("node-c", "session-2")  # nobody listens
        await here.presence.kick("node-b", "session-3")
        async with asyncio.timeout(scaled(5)):
            assert [await kicked.get(), await kicked.get()] == ["session-1", "session-3"]
    finally:
        await here.close()
        await there.close()


async def test_a_kick_on_the_memory_backend_goes_straight_to_the_handler() -> None:
    backend = MemoryBackend(history_max_events=5, history_max_age_s=60, idempotency_ttl_s=60)
    kicked: list[str] = []
    backend.presence.on_kick("node-a", kicked.append)
    await backend.start(Sink())
    await backend.presence.kick("node-a", "session-1")
    assert kicked == ["session-1"]
    await backend.close()
