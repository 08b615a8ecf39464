"""Presence of this node's sessions in the cluster, and the per-user connection cap.

One :class:`PresenceTracker` per node. A session's opening is written by the
backend step of its ``hello`` (:meth:`PresenceTracker.opening`, applied with
``Backend.open_session`` together with the cap check). Later, sessions report
when they change subscriptions and close; the tracker writes that to the
backend's :class:`~fieldpush.backend.base.Presence` in order, in batches (one
pipelined round trip per event-loop iteration however many sessions changed),
without making a session wait; a session's reports start only once its
``hello`` step returned, so they follow it. A heartbeat renews the node's entries every third of
``presence_ttl_s``: the entries of a node that died vanish within
``presence_ttl_s``.

The per-user cap (``max_connections_per_user``) is checked at ``hello``
against the cluster-wide entries, atomically with the new entry's write: with
the ``newest`` policy the new connection is refused (4029); with ``oldest``
the oldest sessions beyond the cap are closed (4029), wherever they are
(other nodes get a ``kick``; the tracker registers its kick handler with the
backend's presence when it is made, before the backend starts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from fieldpush.backend.base import (
    ChannelRead,
    Ledger,
    Presence,
    PresenceEntry,
    SessionOpened,
    SessionOpening,
)
from fieldpush.errors import BackendUnavailable
from fieldpush.identity.auth import Identity
from fieldpush.settings import Settings
from fieldpush_client.protocol import CloseCode

__all__ = ["Member", "PresenceTracker", "Sessions"]

log = logging.getLogger("fieldpush.presence")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Member(Protocol):
    """A session as presence sees it (past ``hello``: ``identity`` is set)."""

    @property
    def id(self) -> str: ...

    @property
    def identity(self) -> Identity | None: ...

    @property
    def device(self) -> str: ...

    @property
    def app(self) -> str:
        """``hello.app`` (``""``: not sent)."""

    @property
    def since_ms(self) -> int:
        """When it opened (ms since the epoch)."""

    @property
    def subs(self) -> Collection[str]:
        """The channels it is subscribed to."""


class _Closable(Protocol):
    def close(self, code: CloseCode, reason: str) -> None: ...


class Sessions(Protocol):
    """This node's open sessions by id (the registry)."""

    def session(self, session_id: str) -> _Closable | None: ...


class PresenceTracker:
    """See the module docstring."""

    def __init__(
        self, presence: Presence, ledger: Ledger, sessions: Sessions, settings: Settings
    ) -> None:
        self._presence = presence
        self._ledger = ledger
        self._sessions = sessions
        self._settings = settings
        self._node_id = settings.node_id
        presence.on_kick(self._node_id, self.kicked)
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
            await self._presence.gone(self._node_id)
        except BackendUnavailable as exc:
            log.warning("presence entries of this node left to expire: %s", exc)

    def entry(self, session: Member) -> PresenceEntry:
        assert session.identity is not None  # sessions report only past hello
        return PresenceEntry(
            user=session.identity.user,
            session=session.id,
            device=session.device,
            node=self._node_id,
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

    def opening(self, session: Member, reads: list[ChannelRead]) -> SessionOpening:
        """The backend step of a session's ``hello`` (``Backend.open_session``):
        its cap, its presence on its channels, and its membership of its teams'
        audience (for the receipts of team events), with ``reads``."""
        entry = self.entry(session)
        identity = session.identity
        assert identity is not None  # checked by entry()
        channels = list(session.subs)
        audience = [f"team:{team}" for team in identity.teams]
        audience += [channel for channel in channels if channel == "broadcast"]
        settings = self._settings
        return SessionOpening(
            entry=entry,
            channels=channels,
            audience=audience,
            reads=reads,
            cap=settings.max_connections_per_user,
            refuse_over_cap=settings.connections_per_user_policy == "newest",
            app=session.app,
            max_devices=settings.max_devices_per_user,
        )

    def subscribed(self, session: Member, channel: str) -> None:
        entry, presence, ledger = self.entry(session), self._presence, self._ledger
        self._later(lambda: presence.subscribe(entry, channel))
        if channel == "broadcast":
            pairs = [(channel, entry.user)]
            self._later(lambda: ledger.note_audience(pairs))

    def unsubscribed(self, session: Member, channel: str) -> None:
        entry, presence = self.entry(session), self._presence
        self._later(lambda: presence.unsubscribe(entry, channel))

    def closed(self, session: Member, channels: list[str]) -> None:
        entry, presence = self.entry(session), self._presence
        self._later(lambda: presence.leave(entry, channels))

    async def _beat(self) -> None:
        settings = self._settings
        ttl_ms = int(settings.presence_ttl_s * 1000)
        while True:
            try:
                await self._presence.beat(self._node_id, ttl_ms)
            except BackendUnavailable as exc:
                log.warning("presence heartbeat failed: %s", exc)
            await asyncio.sleep(settings.presence_ttl_s / 3)

    # -------------------------------------------------------------------- cap

    async def admit(self, opened: SessionOpened) -> bool:
        """Apply the per-user cap to the answer of :meth:`opening`: False when the
        session is refused (policy ``newest``; the backend wrote nothing); with
        policy ``oldest``, close the user's oldest sessions beyond the cap,
        wherever they are. Raises ``BackendUnavailable``."""
        if not opened.admitted:
            return False
        cap = self._settings.max_connections_per_user
        excess = len(opened.others) + 1 - cap
        if not cap or excess <= 0:
            return True
        for entry in opened.others[:excess]:
            log.info(
                "session %s of user %s closed: more than %d connections",
                entry.session,
                entry.user,
                cap,
            )
            if entry.node == self._node_id:
                self.kicked(entry.session)
            else:
                await self._presence.kick(entry.node, entry.session)
        return True

    def kicked(self, session_id: str) -> None:
        """Close a session of this node on request of the cap (from any node:
        registered with :meth:`Presence.on_kick` when the tracker is made)."""
        session = self._sessions.session(session_id)
        if session is not None:
            session.close(CloseCode.RATE_LIMITED, "too many connections for this user")
