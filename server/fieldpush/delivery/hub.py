"""Local fan-out: channel -> the subscribers on this node.

The hub keeps one :class:`Feed` per channel that has local subscribers, and
asks the backend for that channel's live feed only while it has some
(reference counting, with a short linger so that a phone reconnecting does not
cause an UNSUBSCRIBE/SUBSCRIBE pair).

Guarantees
    Each feed hands its subscribers every event of the channel exactly once
    and in ``seq`` order, from the moment :meth:`Hub.attach` returns. The live
    feed from the backend is at most once, so the feed checks that ``seq`` is
    contiguous: a duplicate is dropped, a gap (or a backend reconnect) starts a
    catch-up that reads the missing events from history before any later live
    event is passed on. If history no longer holds them (trimmed, or reset to a
    new epoch), the subscribers are told with :meth:`Subscriber.feed_lost` so
    that their clients resume and learn ``recovered: false``.

    :meth:`attach` is safe under many concurrent first subscriptions of one
    channel: they all wait for the same backend subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Protocol

from fieldpush.backend.base import Backend
from fieldpush.errors import BackendUnavailable
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset

__all__ = ["Feed", "Hub", "Subscriber"]

log = logging.getLogger("fieldpush.hub")


class Subscriber(Protocol):
    """Something on this node that receives a channel's events."""

    def deliver(self, event: Event) -> None:
        """The next event of the channel. Must not block."""

    def feed_lost(self, channel: str) -> None:
        """Events of ``channel`` were lost for good on this node."""


class Feed:
    """This node's live feed of one channel."""

    __slots__ = (
        "backlog",
        "catchup",
        "channel",
        "closing",
        "idle_since",
        "position",
        "ready",
        "subs",
        "subscribed",
    )

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.subs: set[Subscriber] = set()
        #: The position of the last event handed to the subscribers.
        self.position: Offset | None = None
        #: Live events received while opening or catching up.
        self.backlog: list[Event] = []
        loop = asyncio.get_running_loop()
        #: Done once the backend confirmed the live subscription.
        self.subscribed: asyncio.Future[None] = loop.create_future()
        #: Done once ``position`` is known (the feed is live from there).
        self.ready: asyncio.Future[None] = loop.create_future()
        self.catchup: asyncio.Task[None] | None = None
        self.closing: asyncio.Task[None] | None = None
        self.idle_since = 0.0


class Hub:
    """The node's channel feeds. It is the backend's :class:`EventSink`."""

    def __init__(self, backend: Backend, *, linger_s: float = 5.0, page_events: int = 500) -> None:
        self._backend = backend
        self._feeds: dict[str, Feed] = {}
        self._linger_s = linger_s
        self._page = page_events
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.catchups = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle())

    async def close(self) -> None:
        tasks = list(self._tasks)
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for feed in self._feeds.values():
            if feed.catchup is not None:
                tasks.append(feed.catchup)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._feeds.clear()

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def channel_count(self) -> int:
        return len(self._feeds)

    def feed(self, channel: str) -> Feed | None:
        return self._feeds.get(channel)

    # ------------------------------------------------------------- subscriptions

    async def join(self, channel: str, subscriber: Subscriber) -> tuple[Feed, bool]:
        """Add ``subscriber`` to ``channel``'s feed; return once the feed's live
        subscription is confirmed by the backend.

        Returns ``(feed, True)`` when this call opened the feed: the caller then
        owes it its position, read from the backend after this returned, by
        :meth:`opened` (or hands the duty back with :meth:`abandon`); live
        events wait in the feed's backlog meanwhile. Otherwise ``(feed,
        False)``: the feed may still wait for its opener (``feed.ready``), so a
        caller never waits for another feed's ``ready`` before it delivered the
        positions it owes (two sessions opening each other's channels would
        wait forever). Raises ``BackendUnavailable``; the subscriber is then
        not attached.
        """
        while True:
            feed = self._feeds.get(channel)
            if feed is None:
                feed = self._feeds[channel] = Feed(channel)
                feed.subs.add(subscriber)
                with self._owing(feed):
                    await self._backend.subscribe(channel)
                feed.subscribed.set_result(None)
                return feed, True
            if feed.closing is not None:
                await asyncio.shield(feed.closing)
                continue
            feed.subs.add(subscriber)
            if not feed.subscribed.done():
                try:
                    await asyncio.shield(feed.subscribed)
                except BaseException:
                    feed.subs.discard(subscriber)
                    raise
            return feed, False

    async def attach(self, channel: str, subscriber: Subscriber) -> Feed:
        """Add ``subscriber`` to ``channel``'s feed, opening it if needed.

        Returns once the feed is live; its ``position`` is then the newest
        position this node has passed on. Raises ``BackendUnavailable``.
        """
        feed, opened = await self.join(channel, subscriber)
        if opened:
            with self._owing(feed):
                history = await self._backend.read(channel, None, 0)
            self.opened(feed, history.top)
        elif not feed.ready.done():
            try:
                await asyncio.shield(feed.ready)
            except BaseException:
                feed.subs.discard(subscriber)
                raise
        return feed

    @contextlib.contextmanager
    def _owing(self, feed: Feed) -> Iterator[None]:
        """Around the opener's own backend calls for ``feed``: when the backend is
        unavailable the opening fails (its waiters get the error); when the
        opener is cancelled (or fails otherwise) the hub finishes the opening."""
        try:
            yield
        except BackendUnavailable as exc:
            self._failed(feed, exc)
            raise
        except BaseException:
            self.abandon(feed)
            raise

    def opened(self, feed: Feed, position: Offset) -> None:
        """The opener of ``feed`` read its channel's ``position`` after :meth:`join`:
        the feed is live from there (the backlog up to it is dropped)."""
        feed.position = position
        feed.ready.set_result(None)
        self._drain_backlog(feed)

    def abandon(self, feed: Feed) -> None:
        """The opener of ``feed`` will not finish opening it (it failed or was
        cancelled): the hub does, so the feed's other subscribers are not left
        waiting."""
        self._spawn(self._finish_open(feed))

    async def _finish_open(self, feed: Feed) -> None:
        try:
            if not feed.subscribed.done():
                await self._backend.subscribe(feed.channel)
                feed.subscribed.set_result(None)
            history = await self._backend.read(feed.channel, None, 0)
        except BaseException as exc:
            self._failed(feed, exc)
            if not isinstance(exc, BackendUnavailable | asyncio.CancelledError):
                raise
            return
        self.opened(feed, history.top)

    def _failed(self, feed: Feed, exc: BaseException) -> None:
        """The feed could not be opened: its waiters get ``exc`` (cancellation as
        ``BackendUnavailable``), and the backend subscription is undone."""
        if self._feeds.get(feed.channel) is feed:
            del self._feeds[feed.channel]
        if isinstance(exc, asyncio.CancelledError):
            exc = BackendUnavailable(f"the feed of {feed.channel} was not opened")
        for future in (feed.subscribed, feed.ready):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the waiters re-raise it
        self._spawn(self._unsubscribe_unless_reopened(feed.channel))

    def detach(self, channel: str, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; an empty feed is closed after the linger time."""
        feed = self._feeds.get(channel)
        if feed is not None:
            feed.subs.discard(subscriber)
            if not feed.subs:
                feed.idle_since = time.monotonic()

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(self._linger_s)
            horizon = time.monotonic() - self._linger_s
            for feed in list(self._feeds.values()):
                if not feed.subs and feed.ready.done() and feed.idle_since <= horizon:
                    feed.closing = self._spawn(self._close_feed(feed))

    async def _close_feed(self, feed: Feed) -> None:
        if feed.catchup is not None:
            feed.catchup.cancel()
        try:
            await self._unsubscribe_quietly(feed.channel)
        finally:
            if self._feeds.get(feed.channel) is feed:
                del self._feeds[feed.channel]

    async def _unsubscribe_unless_reopened(self, channel: str) -> None:
        """After a failed open: unsubscribe, unless a new feed of the channel
        opened meanwhile (its subscription must stay)."""
        if channel not in self._feeds:
            await self._unsubscribe_quietly(channel)

    async def _unsubscribe_quietly(self, channel: str) -> None:
        # On BackendUnavailable the subscription dies with the connection: a
        # reconnect restores only the channels still subscribed.
        with contextlib.suppress(BackendUnavailable):
            await self._backend.unsubscribe(channel)

    # ---------------------------------------------------------------- live feed

    def on_event(self, event: Event) -> None:
        """Backend callback for each live event (EventSink)."""
        feed = self._feeds.get(event.channel)
        if feed is None:
            return
        if feed.catchup is not None or not feed.ready.done():
            feed.backlog.append(event)
            return
        self._accept(feed, event)

    def on_reconnected(self) -> None:
        """Backend callback: the live feed was interrupted; catch every feed up."""
        for feed in self._feeds.values():
            if feed.ready.done() and feed.catchup is None and feed.subs:
                self._start_catchup(feed)

    def _accept(self, feed: Feed, event: Event) -> None:
        position = feed.position
        assert position is not None  # set before ready
        if event.epoch != position.epoch:
            log.warning(
                "history of %s was reset (new epoch); its subscribers must resume", feed.channel
            )
            self._lose(feed, event.position)
            return
        if event.seq <= position.seq:
            return  # already passed on (a duplicate, or read during a catch-up)
        if event.seq != position.seq + 1:
            feed.backlog.append(event)
            self._start_catchup(feed)
            return
        feed.position = event.position
        for subscriber in feed.subs:
            subscriber.deliver(event)

    def _drain_backlog(self, feed: Feed) -> None:
        backlog, feed.backlog = feed.backlog, []
        for index, event in enumerate(backlog):
            self._accept(feed, event)
            if feed.catchup is not None:  # a gap: the rest waits for the catch-up
                feed.backlog[:0] = backlog[index + 1 :]
                return

    def _lose(self, feed: Feed, position: Offset) -> None:
        feed.position = position
        for subscriber in list(feed.subs):
            subscriber.feed_lost(feed.channel)

    def _start_catchup(self, feed: Feed) -> None:
        self.catchups += 1
        feed.catchup = asyncio.get_running_loop().create_task(self._catch_up(feed))

    async def _catch_up(self, feed: Feed) -> None:
        """Read the events this node missed from history, then resume live."""
        delay = 0.05
        try:
            while True:
                position = feed.position
                assert position is not None
                try:
                    history = await self._backend.read(feed.channel, position, self._page)
                except BackendUnavailable:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                if not history.recovered:
                    log.warning(
                        "events of %s between %s and %s are no longer in history",
                        feed.channel,
                        position,
                        history.top,
                    )
                    self._lose(feed, history.top)
                    break
                for event in history.events:
                    feed.position = event.position
                    for subscriber in feed.subs:
                        subscriber.deliver(event)
                if not history.events or feed.position == history.top:
                    break
        finally:
            feed.catchup = None
        self._drain_backlog(feed)
