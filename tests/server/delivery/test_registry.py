"""The one registry of a node's connections and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fieldpush.delivery.registry import Registry
from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import CloseCode


@dataclass(eq=False)
class Closable:
    id: str = "s1"
    closed: list[int] = field(default_factory=list)
    identity: Identity | None = None

    def close(self, code: CloseCode, reason: str) -> None:
        self.closed.append(int(code))


def test_the_registry_keeps_connections_and_sessions_apart() -> None:
    registry: Registry[Any] = Registry()
    conn = Closable()
    registry.add_connection(conn)
    registry.remove_connection(Closable())  # unknown: nothing happens
    session = Closable("s1")
    registry.add_session(session, "ann")
    assert (registry.connection_count, registry.session_count) == (1, 1)
    assert registry.session("s1") is session and registry.session("s2") is None
    for connection in registry.connections():  # a snapshot: removal is safe
        registry.remove_connection(connection)
    registry.remove_session(session, "ann")
    assert (registry.connection_count, registry.session_count) == (0, 0)


def test_sessions_are_found_by_user_until_removed() -> None:
    registry: Registry[Any] = Registry()
    first, second, other = Closable("s1"), Closable("s2"), Closable("s3")
    registry.add_session(first, "ann")
    registry.add_session(second, "ann")
    registry.add_session(other, "bob")
    assert {s.id for s in registry.sessions_of("ann")} == {"s1", "s2"}
    assert {s.id for s in registry.sessions()} == {"s1", "s2", "s3"}
    for session in registry.sessions_of("ann"):  # a snapshot: removal is safe
        registry.remove_session(session, "ann")
    registry.remove_session(first, "ann")  # twice: nothing happens
    assert registry.sessions_of("ann") == [] and registry.sessions_of("nobody") == []
    assert [s.id for s in registry.sessions()] == ["s3"]
