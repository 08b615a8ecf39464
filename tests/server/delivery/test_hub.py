"""The hub's feed bookkeeping, on the memory backend with a failure injected."""

from __future__ import annotations

import asyncio

import pytest

from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.delivery.hub import Hub
from fieldpush.errors import BackendUnavailable
from fieldpush.events.event import Event
from tests.support.backends import start_backend
from tests.support.timing import eventually


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


async def background_done() -> None:
    """Wait until every other task of the loop finished: the hub's cleanup of a
    failed open among them (the hub's sweeper is not started in these tests)."""
    this = asyncio.current_task()
    await eventually(
        lambda: not asyncio.all_tasks() - {this}, message="the hub's background tasks finished"
    )


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
    await start_backend(backend, hub)
    with pytest.raises(BackendUnavailable):
        await hub.attach("team:a", Collector())
    feed = await hub.attach("team:a", Collector())  # reopened before the cleanup ran
    await background_done()  # the cleanup ran
    assert backend.calls == [("subscribe", "team:a"), ("subscribe", "team:a")]
    assert hub.feed("team:a") is feed
    await hub.close()


async def test_a_failed_open_is_cleaned_up() -> None:
    backend = FlakyBackend()
    hub = Hub(backend)
    await start_backend(backend, hub)
    with pytest.raises(BackendUnavailable):
        await hub.attach("team:a", Collector())
    await background_done()
    assert backend.calls == [("subscribe", "team:a"), ("unsubscribe", "team:a")]
    assert hub.feed("team:a") is None
    await hub.close()
