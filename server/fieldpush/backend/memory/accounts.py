"""Users' access in this process's memory (one node): see
:class:`~fieldpush.backend.base.Accounts`. Every change reaches the listener
before the call returns, so there is nothing to resync."""

from __future__ import annotations

import dataclasses
import time

from fieldpush.backend.base import (
    KEEP,
    AccessListener,
    AccessSnapshot,
    AccountChange,
    AccountState,
    RevokedToken,
)

__all__ = ["MemoryAccounts", "apply_change"]


def apply_change(state: AccountState, change: AccountChange) -> AccountState:
    """``state`` with ``change`` applied (the rules of :class:`AccountChange`)."""
    return dataclasses.replace(
        state,
        active=state.active if change.active is None else change.active,
        tokens_valid_after=max(state.tokens_valid_after, change.tokens_valid_after),
        role=state.role if change.role == KEEP else change.role,
        teams=state.teams if change.teams == KEEP else change.teams,
        changed_at=change.at,
        changed_by=change.by,
    )


class MemoryAccounts:
    """See the module docstring."""

    def __init__(self) -> None:
        self._accounts: dict[str, AccountState] = {}
        self._revoked: dict[str, int] = {}
        self._listener: AccessListener | None = None

    def listen(self, listener: AccessListener) -> None:
        self._listener = listener

    async def change(self, change: AccountChange) -> AccountState:
        state = apply_change(await self.state(change.user), change)
        self._accounts[change.user] = state
        if self._listener is not None:
            self._listener.on_account(state)
        return state

    async def revoke(self, token: RevokedToken) -> None:
        self._revoked[token.jti] = max(token.until, self._revoked.get(token.jti, 0))
        if self._listener is not None:
            self._listener.on_revoked(token)

    async def state(self, user: str) -> AccountState:
        return self._accounts.get(user) or AccountState(user)

    async def snapshot(self) -> AccessSnapshot:
        now = time.time_ns() // 1_000_000
        for jti in [jti for jti, until in self._revoked.items() if until <= now]:
            del self._revoked[jti]
        return AccessSnapshot(
            accounts=list(self._accounts.values()),
            revoked=[RevokedToken(jti, until) for jti, until in self._revoked.items()],
        )
