"""The one registry of this node's connections and sessions.

A connection is registered once its WebSocket upgrade succeeded and removed
when its socket is gone; a session is registered once past ``hello`` and
removed at its teardown. uvicorn keeps its own set of every transport it
serves (for its shutdown); this registry is the only place fieldpush keeps
them: the heartbeat and the node's close iterate it, the metrics gauges count
it, the per-user cap finds sessions in it by id, revocation by user.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import CloseCode

__all__ = ["Closable", "RegisteredSession", "Registry"]


class Closable(Protocol):
    """A connection or session the node may have to close."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Start closing with ``code``; idempotent."""


class RegisteredSession(Closable, Protocol):
    """A session past ``hello``."""

    @property
    def id(self) -> str:
        """The session id (``welcome.session``)."""

    @property
    def identity(self) -> Identity | None:
        """Who it acts for (set before it is registered)."""


C = TypeVar("C", bound=Closable)


class Registry(Generic[C]):
    """See the module docstring. ``C`` is the gateway's connection type."""

    __slots__ = ("_by_user", "_connections", "_sessions")

    def __init__(self) -> None:
        self._connections: set[C] = set()
        self._sessions: dict[str, RegisteredSession] = {}
        self._by_user: dict[str, dict[str, RegisteredSession]] = {}

    def add_connection(self, connection: C) -> None:
        self._connections.add(connection)

    def remove_connection(self, connection: C) -> None:
        """Forget ``connection``; nothing happens if it is not registered."""
        self._connections.discard(connection)

    def connections(self) -> Iterator[C]:
        """The open connections, safe to close while iterating (a snapshot)."""
        return iter(list(self._connections))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def add_session(self, session: RegisteredSession, user: str) -> None:
        """Register ``session`` of ``user`` (the user it was opened for)."""
        self._sessions[session.id] = session
        self._by_user.setdefault(user, {})[session.id] = session

    def remove_session(self, session: RegisteredSession, user: str) -> None:
        """Forget ``session`` of ``user``; nothing happens if it is not registered."""
        self._sessions.pop(session.id, None)
        of_user = self._by_user.get(user)
        if of_user is not None:
            of_user.pop(session.id, None)
            if not of_user:
                del self._by_user[user]

    def sessions(self) -> list[RegisteredSession]:
        """Every session past hello (a snapshot: safe to close while iterating)."""
        return list(self._sessions.values())

    def sessions_of(self, user: str) -> list[RegisteredSession]:
        """The user's sessions on this node (a snapshot)."""
        return list(self._by_user.get(user, {}).values())

    def session(self, session_id: str) -> Closable | None:
        """The open session with that id on this node, if any."""
        return self._sessions.get(session_id)

    @property
    def session_count(self) -> int:
        return len(self._sessions)
