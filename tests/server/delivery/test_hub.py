"""The hub's feed bookkeeping, on the memory backend with a failure injected."""

from __future__ import annotations

import asyncio

import pytest

from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.delivery.hub import Hub
from fieldpush.errors import BackendUnavailable
from fieldpush.events.event import Event
from tests.support.backends import publish_event, start_backend
from tests.support.timing import eventually, scaled


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


class SlowSubscribeBackend(MemoryBackend):
    """Each subscription waits until the test lets it through."""

    def __init__(self) -> None:
        super().__init__(history_max_events=10, history_max_age_s=60, idempotency_ttl_s=60)
        self.gate = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        await self.gate.wait()


async def test_a_feed_is_live_from_the_position_its_opener_read() -> None:
    backend = MemoryBackend(history_max_events=10, history_max_age_s=60, idempotency_ttl_s=60)
    hub = Hub(backend)
    await start_backend(backend, hub)
    first, second = Collector(), Collector()
    feed, opened = await hub.join("team:a", first)
    assert opened and not feed.ready.done()
    before = await publish_event(backend, "team:a", 1)  # in the backlog, at or before the read
    position = (await backend.read("team:a", None, 0)).top
    after = await publish_event(backend, "team:a", 2)
    joined, opened_again = await hub.join("team:a", second)
    assert joined is feed and not opened_again  # the second never owes the position
    hub.opened(feed, position)
    assert feed.ready.done() and feed.position == after
    assert [e.offset for e in first.events] == [str(after)] == [e.offset for e in second.events]
    assert before.seq < after.seq
    await hub.close()


async def test_sessions_opening_each_others_channels_do_not_wait_for_each_other() -> None:
    """Session one opens team:a then joins team:b; session two opens team:b then
    joins team:a. Neither waits for a position the other owes before its own
    step, so both complete (waiting for ``ready`` during the joins would hang)."""
    backend = SlowSubscribeBackend()
    hub = Hub(backend)
    await start_backend(backend, hub)

    async def session(mine: str, theirs: str) -> None:
        me = Collector()
        own, opened = await hub.join(mine, me)
        assert opened
        other, opened_other = await hub.join(theirs, me)
        assert not opened_other
        hub.opened(own, (await backend.read(mine, None, 0)).top)  # its step
        await asyncio.shield(other.ready)

    both = asyncio.gather(session("team:a", "team:b"), session("team:b", "team:a"))
    await asyncio.sleep(0)  # both opened their feed and wait for the subscriptions
    backend.gate.set()
    await asyncio.wait_for(both, scaled(5))
    await hub.close()


async def test_an_abandoned_opening_is_finished_by_the_hub() -> None:
    backend = SlowSubscribeBackend()
    hub = Hub(backend)
    await start_backend(backend, hub)
    opener = asyncio.ensure_future(hub.join("team:a", Collector()))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(hub.attach("team:a", Collector()))
    await asyncio.sleep(0)
    opener.cancel()  # the opener's phone went away mid-subscribe
    backend.gate.set()
    feed = await asyncio.wait_for(waiter, scaled(5))
    assert feed.ready.done() and feed.position is not None
    published = await publish_event(backend, "team:a", 1)
    assert feed.position == published
    await hub.close()
