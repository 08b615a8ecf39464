"""The change-feed webhook's lease and cursor in this process's memory: see
:class:`~fieldpush.backend.base.WebhookState`.

One process is one node, so its deliverer holds the lease in practice; the
lease still expires and fences exactly as on Redis, so the same contract
suite runs on both. Nothing survives a restart, and neither does the memory
backend's change log: a restarted node delivers its new log from the start.
"""

from __future__ import annotations

import time

__all__ = ["MemoryWebhook"]


class MemoryWebhook:
    """See the module docstring."""

    def __init__(self) -> None:
        self._holder: str | None = None
        self._token = 0
        self._expires = 0.0
        self._cursor: str | None = None

    def _held_by(self, holder: str, token: int | None = None) -> bool:
        live = self._holder is not None and time.monotonic() < self._expires
        return live and self._holder == holder and token in (None, self._token)

    async def hold(self, holder: str, ttl_ms: int) -> int | None:
        if not self._held_by(holder):
            if self._holder is not None and time.monotonic() < self._expires:
                return None
            self._holder, self._token = holder, self._token + 1
        self._expires = time.monotonic() + ttl_ms / 1000
        return self._token

    async def release(self, holder: str, token: int) -> None:
        if self._held_by(holder, token):
            self._holder = None

    async def cursor(self) -> str | None:
        return self._cursor

    async def advance(self, holder: str, token: int, cursor: str) -> bool:
        if not self._held_by(holder, token):
            return False
        self._cursor = cursor
        return True
