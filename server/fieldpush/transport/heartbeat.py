"""The node's heartbeat: a WebSocket ping to every connection each ``heartbeat_s``.

A connection that neither answered nor sent anything since the previous ping
is closed with 1011 (docs/protocol.md "Heartbeat"). One task for the node,
owned by :class:`Heartbeat` (started and cancelled by the node).
"""

from __future__ import annotations

import asyncio
import logging
import time

from fieldpush.delivery.registry import Registry
from fieldpush.tasks import stop
from fieldpush.transport.gateway import Connection
from fieldpush_client.protocol import CloseCode

__all__ = ["Heartbeat"]

log = logging.getLogger("fieldpush.heartbeat")


class Heartbeat:
    """See the module docstring."""

    def __init__(self, registry: Registry[Connection], interval_s: float) -> None:
        self._registry = registry
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    def beat(self, now: float) -> None:
        """One round: close the silent connections, ping the others."""
        for conn in self._registry.connections():
            if conn.pinged_at and conn.last_rx < conn.pinged_at:
                log.info(
                    "connection %s: no answer to ping within %s s", conn.peer, self._interval_s
                )
                conn.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
            else:
                conn.pinged_at = now
                conn.ping()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.beat(time.monotonic())
