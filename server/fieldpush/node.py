"""The node: owner of every long-lived part of one fieldpush process.

It holds the settings, the backend, the hub, the token verifier, the metrics,
the set of open connections and the two node-wide tasks (hub sweeper and
heartbeat). It is created by the app's lifespan and closed by it, in a fixed
order: stop the heartbeat, close the hub, close the backend.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from fieldpush.backend.base import Backend
from fieldpush.delivery.hub import Hub
from fieldpush.identity.auth import TokenVerifier
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.engine import SyncEngine, load_sync_config
from fieldpush.tracking.dispatch import Dispatch
from fieldpush.tracking.presence import PresenceTracker
from fieldpush_client.protocol import CloseCode

if TYPE_CHECKING:
    from fieldpush.delivery.session import Session
    from fieldpush.transport.gateway import Connection

__all__ = ["Flusher", "Node", "make_backend"]

log = logging.getLogger("fieldpush.node")


class Flusher:
    """Writes the sessions' pending events in batches.

    A session registers when its outbox goes from empty to non-empty: with
    :meth:`add` it is flushed at the end of this event-loop iteration, so
    events that arrive together (one Redis read) still share a frame; with
    :meth:`add_later` at the end of the node's current coalescing window, which
    one timer serves for every session. Sessions use the window for ``normal``
    events that follow a write to them within ``window_s`` (:meth:`coalesces`):
    a burst shares frames, a lone event goes at once. An urgent event for a
    session that waits for the window takes its waiting events along at once.
    """

    __slots__ = (
        "_later",
        "_later_handle",
        "_loop_time",
        "_metrics",
        "_now",
        "_now_scheduled",
        "window_s",
    )

    def __init__(self, metrics: Metrics, window_s: float) -> None:
        self._now: list[Session] = []
        self._later: list[Session] = []
        self._now_scheduled = False
        self._later_handle: asyncio.TimerHandle | None = None
        self._metrics = metrics
        self.window_s = window_s
        self._loop_time = time.monotonic

    def coalesces(self, flushed_at: float) -> bool:
        """Whether a ``normal`` event for a session last written at ``flushed_at``
        waits for the window (it had a write less than ``window_s`` ago)."""
        return self._loop_time() - flushed_at < self.window_s

    def add(self, session: Session) -> None:
        """Flush ``session`` at the end of this event-loop iteration."""
        self._now.append(session)
        if not self._now_scheduled:
            self._now_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def add_later(self, session: Session) -> None:
        """Flush ``session`` at the end of the current coalescing window."""
        self._later.append(session)
        if self._later_handle is None:
            self._later_handle = asyncio.get_running_loop().call_later(
                self.window_s, self._flush_later
            )

    def _flush_now(self) -> None:
        dirty, self._now = self._now, []
        self._now_scheduled = False
        self._flush(dirty)

    def _flush_later(self) -> None:
        dirty, self._later = self._later, []
        self._later_handle = None
        self._flush(dirty)

    def _flush(self, dirty: list[Session]) -> None:
        events = frames = 0
        now = self._loop_time()
        for session in dirty:
            count = session.flush()
            if count:
                session.flushed_at = now
                events += count
                frames += 1
        metrics = self._metrics
        metrics.events_delivered += events
        metrics.frames_written += frames


def make_backend(settings: Settings) -> Backend:
    """The configured backend: Redis when ``redis_url`` is set, else memory."""
    sync: dict[str, Any] = {
        "sync_results_ttl_s": settings.sync_results_ttl_s,
        "sync_log_max_entries": settings.sync_log_max_entries,
        "sync_log_max_age_s": settings.sync_log_max_age_s,
    }
    if settings.redis_url:
        from fieldpush.backend.redis.backend import RedisBackend

        return RedisBackend(
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            timeout_s=settings.redis_timeout_s,
            history_max_events=settings.history_max_events,
            history_max_age_s=settings.history_max_age_s,
            history_meta_ttl_s=settings.history_meta_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            receipts_ttl_s=settings.receipts_ttl_s,
            **sync,
        )
    from fieldpush.backend.memory.backend import MemoryBackend

    return MemoryBackend(
        history_max_events=settings.history_max_events,
        history_max_age_s=settings.history_max_age_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        receipts_ttl_s=settings.receipts_ttl_s,
        **sync,
    )


class Node:
    """One fieldpush process. See the module docstring."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.verifier = TokenVerifier(settings)
        self.hub = Hub(backend, page_events=settings.replay_page_events)
        self.connections: set[Connection] = set()
        self.sessions: dict[str, Session] = {}
        self.metrics = Metrics(
            gauges={
                "connections": ("Open WebSocket connections.", lambda: len(self.connections)),
                "sessions": ("Sessions past hello.", lambda: len(self.sessions)),
                "channels": (
                    "Channels with a live feed on this node.",
                    lambda: self.hub.channel_count,
                ),
            },
            catchups=lambda: self.hub.catchups,
        )
        self.flusher = Flusher(self.metrics, settings.coalesce_ms / 1000)
        self.dispatch = Dispatch(self)
        self.presence = PresenceTracker(self)
        self.sync = SyncEngine(
            *load_sync_config(settings),
            records=backend.records,
            publisher=backend,
            acked=self.dispatch.acked,
            new_event_id=self.new_event_id,
            settings=settings,
            metrics=self.metrics,
        )
        #: ``welcome.poll``: the schema's poll intervals, then the settings' (which win).
        self.poll_intervals = {**self.sync.schema.poll_intervals(), **settings.poll_intervals_s}
        self._heartbeat: asyncio.Task[None] | None = None
        self._id_prefix = secrets.token_hex(6)
        self._id_counter = itertools.count(1)

    def new_event_id(self) -> str:
        """A unique event id: this process's random prefix and a counter
        (cheaper than uuid4, which reads the OS's random source every time)."""
        return f"{self._id_prefix}{next(self._id_counter):08x}"

    def new_session_id(self) -> str:
        """A unique session id, made like event ids."""
        return f"s{self._id_prefix}{next(self._id_counter):08x}"

    async def start(self) -> None:
        await self.backend.start(self.hub, self.settings.node_id, self.presence.kicked)
        self.hub.start()
        self.dispatch.start()
        self.presence.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        log.info(
            "node %s started on the %s backend; schema %s, mappings %s",
            self.settings.node_id,
            self.backend.name,
            self.settings.schema_path,
            self.settings.mappings_path or "none",
        )

    async def close(self) -> None:
        for conn in list(self.connections):  # still here after the drain deadline
            conn.close(CloseCode.SERVICE_RESTART, "node stopped")
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.dispatch.close()
        await self.presence.close()
        await self.hub.close()
        await self.backend.close()
        log.info("node %s stopped", self.settings.node_id)

    def sessions_opened(self, session: Session) -> None:
        self.sessions[session.id] = session

    def sessions_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    async def _beat(self) -> None:
        """Ping every connection each ``heartbeat_s``; close those that did not
        answer (or send anything) since the previous ping with 1011."""
        interval = self.settings.heartbeat_s
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.pinged_at and conn.last_rx < conn.pinged_at:
                    log.info("connection %s: no answer to ping within %s s", conn.peer, interval)
                    conn.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
                else:
                    conn.pinged_at = now
                    conn.ping()
