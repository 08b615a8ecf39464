"""The heartbeat pings every registered connection and closes the silent ones (1011)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from fieldpush.delivery.registry import Registry
from fieldpush.transport.heartbeat import Heartbeat
from fieldpush_client.protocol import CloseCode


@dataclass(eq=False)
class FakeConnection:
    last_rx: float = 0.0
    pinged_at: float = 0.0
    peer: str = "test"
    pings: int = 0
    closed: list[int] = field(default_factory=list)

    def ping(self) -> None:
        self.pings += 1

    def close(self, code: CloseCode, reason: str) -> None:
        self.closed.append(int(code))


def test_a_connection_is_pinged_then_closed_if_it_stays_silent() -> None:
    registry: Registry[Any] = Registry()
    quiet, chatty = FakeConnection(last_rx=1.0), FakeConnection(last_rx=1.0)
    registry.add_connection(quiet)
    registry.add_connection(chatty)
    heartbeat = Heartbeat(cast(Any, registry), interval_s=25)
    heartbeat.beat(now=10.0)
    assert (quiet.pings, chatty.pings) == (1, 1)
    chatty.last_rx = 20.0  # it answered
    heartbeat.beat(now=35.0)
    assert quiet.closed == [CloseCode.INTERNAL_ERROR]
    assert chatty.closed == [] and chatty.pings == 2
