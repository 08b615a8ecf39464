"""The hub's feed bookkeeping, on the memory backend with a failure injected."""

from __future__ import annotations

import asyncio

import pytest

from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.delivery.hub import Hub
from fieldpush.errors import BackendUnavailable
from fieldpush.events.event import Event


class FlakyBackend(MemoryBackend):
    """Refuses the first subscription; records every (un)subscription."""

    def __init__(self) -> None:
        super().__init__(history_max_events=10, history_max_age_s=60, idempotency_ttl_s=60)
        self.calls: list[tuple[str, str]] = []
        self.refuse_next = True

    async def subscribe(self, channel: str) -> None:
        self.calls.append(("subscribe", channel))
        if self.refuse_next:
            self.refuse_next = False
            raise BackendUnavailable("injected")

    async def unsubscribe(self, channel: str) -> None:
        self.calls.append(("unsubscribe", channel))


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def feed_lost(self, channel: str) -> None:
        raise AssertionError(f"feed of {channel} lost")


async def test_a_failed_open_does_not_unsubscribe_a_feed_reopened_meanwhile() -> None:
    backend = FlakyBackend()
    hub = Hub(backend)
    await backend.start(hub)
    with pytest.raises(BackendUnavailable):
        await hub.attach("team:a", Collector())
    feed = await hub.attach("team:a", Collector())  # reopened before the cleanup ran
    for _ in range(3):
        await asyncio.sleep(0)  # let the cleanup task run
    assert backend.calls == [("subscribe", "team:a"), ("subscribe", "team:a")]
    assert hub.feed("team:a") is feed
    await hub.close()


async def test_a_failed_open_is_cleaned_up() -> None:
    backend = FlakyBackend()
    hub = Hub(backend)
    await backend.start(hub)
    with pytest.raises(BackendUnavailable):
        await hub.attach("team:a", Collector())
    for _ in range(3):
        await asyncio.sleep(0)
    assert backend.calls == [("subscribe", "team:a"), ("unsubscribe", "team:a")]
    assert hub.feed("team:a") is None
    await hub.close()
