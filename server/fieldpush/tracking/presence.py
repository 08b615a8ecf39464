"""Presence of this node's sessions in the cluster, and the per-user connection cap.

One :class:`PresenceTracker` per node. Sessions report when they open, change
subscriptions and close; the tracker writes that to the backend's
:class:`~fieldpush.backend.base.Presence` in order, in batches (one pipelined
round trip per event-loop iteration however many sessions changed), without
making a session wait. A heartbeat renews the node's entries every third of
``presence_ttl_s``: the entries of a node that died vanish within
``presence_ttl_s``.

The per-user cap (``max_connections_per_user``) is checked at ``hello``
against the cluster-wide entries: with the ``newest`` policy the new
connection is refused (4029); with ``oldest`` the oldest sessions beyond the
cap are closed (4029), wherever they are (other nodes get a ``kick``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fieldpush.backend.base import PresenceEntry
from fieldpush.errors import BackendUnavailable
from fieldpush_client.protocol import CloseCode

if TYPE_CHECKING:
    from fieldpush.delivery.session import Session
    from fieldpush.node import Node

__all__ = ["PresenceTracker"]

log = logging.getLogger("fieldpush.presence")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class PresenceTracker:
    """See the module docstring."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._queue: list[Callable[[], Awaitable[None]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_forever()), loop.create_task(self._beat())]

    async def close(self) -> None:
        """Stop; the node's entries stop counting at once (no wait for the TTL)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._node.backend.presence.gone(self._node.settings.node_id)
        except BackendUnavailable as exc:
            log.warning("presence entries of this node left to expire: %s", exc)

    def entry(self, session: Session) -> PresenceEntry:
        assert session.identity is not None
        return PresenceEntry(
            user=session.identity.user,
            session=session.id,
            device=session.device,
            node=self._node.settings.node_id,
            since=session.since_ms,
            last_seen=_now_ms(),
        )

    # ----------------------------------------------------------------- writes

    def _later(self, write: Callable[[], Awaitable[None]]) -> None:
        self._queue.append(write)
        self._wake.set()

    async def _write_forever(self) -> None:
        """Run queued writes in order; each batch is sent in one go."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            results = await asyncio.gather(*(write() for write in batch), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                log.warning("%d presence update(s) lost: %s", len(failed), failed[0])

    def opened(self, session: Session) -> None:
        """A session passed ``hello``: it is online, on its channels, and a known
        member of its teams (for the receipts of team events)."""
        assert session.identity is not None
        identity = session.identity
        entry = self.entry(session)
        channels = list(session.subs)
        backend = self._node.backend
        audience = [(f"team:{team}", identity.user) for team in identity.teams]
        audience += [(ch, identity.user) for ch in channels if ch == "broadcast"]
        self._later(lambda: backend.presence.join(entry, channels))
        if audience:
            self._later(lambda: backend.ledger.note_audience(audience))

    def subscribed(self, session: Session, channel: str) -> None:
        entry, presence = self.entry(session), self._node.backend.presence
        self._later(lambda: presence.subscribe(entry, channel))
        if channel == "broadcast":
            pairs = [(channel, entry.user)]
            self._later(lambda: self._node.backend.ledger.note_audience(pairs))

    def unsubscribed(self, session: Session, channel: str) -> None:
        entry, presence = self.entry(session), self._node.backend.presence
        self._later(lambda: presence.unsubscribe(entry, channel))

    def closed(self, session: Session, channels: list[str]) -> None:
        entry, presence = self.entry(session), self._node.backend.presence
        self._later(lambda: presence.leave(entry, channels))

    async def _beat(self) -> None:
        settings = self._node.settings
        ttl_ms = int(settings.presence_ttl_s * 1000)
        while True:
            try:
                await self._node.backend.presence.beat(settings.node_id, ttl_ms)
            except BackendUnavailable as exc:
                log.warning("presence heartbeat failed: %s", exc)
            await asyncio.sleep(settings.presence_ttl_s / 3)

    # -------------------------------------------------------------------- cap

    async def admit(self, session: Session) -> bool:
        """Apply the per-user connection cap to a session at ``hello``.

        Returns False when the session must be refused (policy ``newest``).
        Raises ``BackendUnavailable``."""
        settings = self._node.settings
        cap = settings.max_connections_per_user
        if not cap:
            return True
        assert session.identity is not None
        entries, _ = await self._node.backend.presence.of_user(session.identity.user)
        excess = len(entries) + 1 - cap
        if excess <= 0:
            return True
        if settings.connections_per_user_policy == "newest":
            return False
        for entry in entries[:excess]:
            log.info(
                "session %s of user %s closed: more than %d connections",
                entry.session,
                entry.user,
                cap,
            )
            if entry.node == settings.node_id:
                self.kicked(entry.session)
            else:
                await self._node.backend.presence.kick(entry.node, entry.session)
        return True

    def kicked(self, session_id: str) -> None:
        """Close a session of this node on request of the cap (from any node)."""
        session = self._node.sessions.get(session_id)
        if session is not None:
            session.close(CloseCode.RATE_LIMITED, "too many connections for this user")
