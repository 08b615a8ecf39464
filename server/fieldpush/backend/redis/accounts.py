"""Users' access on Redis, shared by every node: see
:class:`~fieldpush.backend.base.Accounts`.

Keys (``<p>`` is the key prefix):

- ``<p>:acct`` hash: user -> the user's state as JSON (``account.lua`` changes
  it field by field, atomically, and announces the result);
- ``<p>:revoked`` sorted set: revoked ``jti`` scored by the ms until which it
  is remembered; entries past it are removed by each :meth:`RedisAccounts.revoke`
  and :meth:`RedisAccounts.snapshot`;
- ``<p>:ctl:access`` pub/sub: ``a <state JSON>`` after a change, ``r <until>
  <jti>`` after a revocation. Every node subscribes; a node whose pub/sub link
  was down is told to resync (:meth:`RedisAccounts.resync`).

A user's state is a few dozen bytes; the hash holds every user ever changed
(a firm's departed employees, over the years: thousands, read in one
``HGETALL`` at each re-read).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fieldpush.backend.base import (
    KEEP,
    AccessListener,
    AccessSnapshot,
    AccountChange,
    AccountState,
    RevokedToken,
)
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script

__all__ = ["RedisAccounts"]

log = logging.getLogger("fieldpush.backend")

_CHANGE = script("account.lua")


def _state(raw: bytes | str) -> AccountState:
    """A stored state (JSON); raises ValueError if it is not one."""
    fields = json.loads(raw)
    if not isinstance(fields, dict) or not isinstance(fields.get("user"), str):
        raise ValueError("not an account state")
    teams = fields.get("teams")
    return AccountState(
        user=str(fields["user"]),
        active=fields.get("active") is not False,
        tokens_valid_after=int(fields.get("tokens_valid_after") or 0),
        role=fields.get("role"),
        # Lua's cjson writes an empty list as {}: both mean no teams.
        teams=None if teams is None else tuple(teams),
        changed_at=int(fields.get("changed_at") or 0),
        changed_by=str(fields.get("changed_by") or ""),
    )


class RedisAccounts:
    """See the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._hash = f"{prefix}:acct"
        self._revoked = f"{prefix}:revoked"
        #: The pub/sub channel every node's backend subscribes to.
        self.channel = f"{prefix}:ctl:access".encode()
        self._listener: AccessListener | None = None

    def listen(self, listener: AccessListener) -> None:
        self._listener = listener

    async def change(self, change: AccountChange) -> AccountState:
        body: dict[str, Any] = {
            "at": change.at,
            "by": change.by,
            "tokens_valid_after": change.tokens_valid_after,
        }
        if change.active is not None:
            body["active"] = change.active
        if change.role != KEEP:
            body["role"] = change.role
        if change.teams != KEEP:
            body["teams"] = None if change.teams is None else list(change.teams)
        reply = await self._client.run(
            _CHANGE, [], [self._hash, self.channel, change.user, json.dumps(body)]
        )
        return _state(reply)

    async def revoke(self, token: RevokedToken) -> None:
        now = time.time_ns() // 1_000_000
        await self._client.pipeline(
            [
                (b"ZADD", self._revoked, b"GT", token.until, token.jti),
                (b"ZREMRANGEBYSCORE", self._revoked, b"-inf", now),
                (b"PUBLISH", self.channel, f"r {token.until} {token.jti}"),
            ]
        )

    async def state(self, user: str) -> AccountState:
        raw = await self._client.execute(b"HGET", self._hash, user)
        return AccountState(user) if raw is None else _state(raw)

    async def snapshot(self) -> AccessSnapshot:
        now = time.time_ns() // 1_000_000
        _, accounts, revoked = await self._client.pipeline(
            [
                (b"ZREMRANGEBYSCORE", self._revoked, b"-inf", now),
                (b"HGETALL", self._hash),
                (b"ZRANGE", self._revoked, 0, -1, b"WITHSCORES"),
            ]
        )
        return AccessSnapshot(
            accounts=[_state(raw) for raw in accounts[1::2]],
            revoked=[
                RevokedToken(jti.decode(), int(float(until)))
                for jti, until in zip(revoked[::2], revoked[1::2], strict=True)
            ],
        )

    def announced(self, payload: bytes) -> None:
        """A message of the access channel, for the listener."""
        listener = self._listener
        if listener is None:
            return
        try:
            if payload.startswith(b"a "):
                listener.on_account(_state(payload[2:]))
            elif payload.startswith(b"r "):
                until, jti = payload[2:].decode().split(" ", 1)
                listener.on_revoked(RevokedToken(jti, int(until)))
            else:
                raise ValueError("unknown kind")
        except Exception:  # whatever it is: read the stored state instead
            log.warning("malformed access announcement ignored; resyncing")
            listener.on_access_resync()

    def resync(self) -> None:
        """The pub/sub link was interrupted: announcements may be lost."""
        if self._listener is not None:
            self._listener.on_access_resync()
