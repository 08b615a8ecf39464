"""The one registry of a node's connections and sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fieldpush.delivery.registry import Registry
from fieldpush_client.protocol import CloseCode


@dataclass(eq=False)
class Closable:
    id: str = "s1"
    closed: list[int] = field(default_factory=list)

    def close(self, code: CloseCode, reason: str) -> None:
        self.closed.append(int(code))


def test_the_registry_keeps_connections_and_sessions_apart() -> None:
    registry: Registry[Any] = Registry()
    conn = Closable()
    registry.add_connection(conn)
    registry.remove_connection(Closable())  # unknown: nothing happens
    session = Closable("s1")
    registry.add_session(session)
    assert (registry.connection_count, registry.session_count) == (1, 1)
    assert registry.session("s1") is session and registry.session("s2") is None
    for connection in registry.connections():  # a snapshot: removal is safe
        registry.remove_connection(connection)
    registry.remove_session(session)
    assert (registry.connection_count, registry.session_count) == (0, 0)
