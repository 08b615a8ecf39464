"""The change-feed webhook's lease and cursor on Redis, shared by every node:
see :class:`~fieldpush.backend.base.WebhookState`.

Keys (``<p>`` is the key prefix):

- ``<p>:webhook:lease`` string ``<token> <holder>`` with a TTL (``PX``): the
  deliverer. ``webhook_hold.lua`` sets it when absent (``INCR`` of the fence
  gives the token) or renews it (``PEXPIRE``) for its holder; one script, so
  two nodes asking at once get one lease;
- ``<p>:webhook:fence`` integer: the last fencing token granted (no TTL);
- ``<p>:webhook:cursor`` string: the cursor after the last delivered entry
  (no TTL), written by ``webhook_fenced.lua`` only while the lease still
  reads ``<token> <holder>`` of the writer (compare-and-set).
"""

from __future__ import annotations

from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script

__all__ = ["RedisWebhook"]

_HOLD = script("webhook_hold.lua")
_FENCED = script("webhook_fenced.lua")


class RedisWebhook:
    """See the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._lease = f"{prefix}:webhook:lease"
        self._fence = f"{prefix}:webhook:fence"
        self._cursor = f"{prefix}:webhook:cursor"

    async def hold(self, holder: str, ttl_ms: int) -> int | None:
        reply = await self._client.run(_HOLD, [self._lease, self._fence], [holder, ttl_ms])
        return None if reply is None else int(reply)

    async def release(self, holder: str, token: int) -> None:
        await self._client.run(_FENCED, [self._lease, self._lease], [f"{token} {holder}"])

    async def cursor(self) -> str | None:
        raw = await self._client.execute(b"GET", self._cursor)
        return None if raw is None else bytes(raw).decode()

    async def advance(self, holder: str, token: int, cursor: str) -> bool:
        args = [f"{token} {holder}", cursor]
        return int(await self._client.run(_FENCED, [self._lease, self._cursor], args)) == 1
