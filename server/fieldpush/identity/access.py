"""This node's mirror of the cluster's access state, and the one check of it.

:class:`AccessList` holds what :class:`~fieldpush.backend.base.Accounts`
stores: disabled users, each user's ``tokens_valid_after``, revoked ``jti``
and the directory's role and teams. The verifier asks it about every token
it accepts (:meth:`AccessList.check`, a few dict lookups: no round trip on
the handshake's path); the node keeps it true (:mod:`fieldpush.delivery.access`).

The rules (docs/security.md, "Revocation"):

- a disabled user's tokens are refused: ``account_disabled``;
- a token issued (``iat``, seconds) before the user's ``tokens_valid_after``
  (ms), or without ``iat`` once that is set, is refused: ``token_revoked``;
- a token whose ``jti`` is revoked is refused: ``token_revoked``;
- otherwise the token's identity stands, with the directory's role and teams
  in place of the token's claims where the directory has them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fieldpush.backend.base import AccessSnapshot, AccountState, RevokedToken
from fieldpush.errors import AccessRevoked, AuthError
from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import CloseCode, ErrorCode


def close_code_for(refusal: AuthError) -> CloseCode:
    """The socket's close code for a refused token: 4003 for a valid token
    that may no longer act (disabled user, revoked token), else 4001."""
    return CloseCode.FORBIDDEN if isinstance(refusal, AccessRevoked) else CloseCode.UNAUTHORIZED


def error_code_of(refusal: AuthError) -> str:
    """The protocol's error code for a refused token: ``account_disabled`` or
    ``token_revoked`` for a valid token that may no longer act, else ``unauthorized``."""
    return refusal.reason if isinstance(refusal, AccessRevoked) else ErrorCode.UNAUTHORIZED.value


__all__ = ["AccessList", "Changes", "close_code_for", "error_code_of"]


class AccessList:
    """See the module docstring. Changed only by the node (:meth:`apply`,
    :meth:`revoke`, :meth:`replace`), read by every token check."""

    __slots__ = ("_accounts", "_revoked")

    def __init__(self) -> None:
        #: Users whose state differs from the defaults.
        self._accounts: dict[str, AccountState] = {}
        #: Revoked ``jti`` -> until when (ms) they are remembered.
        self._revoked: dict[str, int] = {}

    def check(self, identity: Identity) -> Identity:
        """``identity`` as this node may let it act, or :class:`AccessRevoked`."""
        token_id = identity.token_id
        if token_id is not None and token_id in self._revoked:
            if self._revoked[token_id] > time.time() * 1000:
                raise AccessRevoked(ErrorCode.TOKEN_REVOKED.value, "token revoked")
            del self._revoked[token_id]
        state = self._accounts.get(identity.user)
        if state is None:
            return identity
        if not state.active:
            raise AccessRevoked(ErrorCode.ACCOUNT_DISABLED.value, "account disabled")
        if state.tokens_valid_after and (
            identity.issued_at is None or identity.issued_at * 1000 < state.tokens_valid_after
        ):
            raise AccessRevoked(ErrorCode.TOKEN_REVOKED.value, "token revoked: issued too early")
        if state.role is None and state.teams is None:
            return identity
        return dataclasses.replace(
            identity,
            role=identity.role if state.role is None else state.role,
            teams=identity.teams if state.teams is None else frozenset(state.teams),
        )

    def state(self, user: str) -> AccountState:
        """The user's state as this node knows it."""
        return self._accounts.get(user) or AccountState(user)

    def apply(self, state: AccountState) -> Changes:
        """Take a user's new state; what changed for :meth:`check`."""
        before = self._accounts.get(state.user) or AccountState(state.user)
        if _default(state):
            self._accounts.pop(state.user, None)
        else:
            self._accounts[state.user] = state
        return Changes.between({state.user: before}, {state.user: state})

    def revoke(self, token: RevokedToken) -> Changes:
        """Take a revoked token; a new one may concern any session."""
        known = self._revoked.get(token.jti)
        self._revoked[token.jti] = max(token.until, known or 0)
        return Changes(any_token=known is None)

    def replace(self, snapshot: AccessSnapshot) -> Changes:
        """Take everything the backend holds; what changed for :meth:`check`."""
        accounts = {s.user: s for s in snapshot.accounts if not _default(s)}
        revoked = {token.jti: token.until for token in snapshot.revoked}
        changes = Changes.between(self._accounts, accounts)
        changes.any_token = bool(revoked.keys() - self._revoked.keys())
        self._accounts = accounts
        self._revoked = revoked
        return changes


@dataclass(slots=True)
class Changes:
    """What an update of the :class:`AccessList` changed: ``users`` whose
    access rules (active, ``tokens_valid_after``) or permissions (the
    directory's role, teams) changed, the latter also in ``permissions``;
    ``any_token``: a newly revoked token, whose user is not known."""

    users: set[str] = field(default_factory=set)
    permissions: set[str] = field(default_factory=set)
    any_token: bool = False

    def merge(self, other: Changes) -> None:
        """Add what ``other`` changed."""
        self.users |= other.users
        self.permissions |= other.permissions
        self.any_token |= other.any_token

    @classmethod
    def between(
        cls, before: Mapping[str, AccountState], after: Mapping[str, AccountState]
    ) -> Changes:
        changes = cls()
        for user in before.keys() | after.keys():
            old = before.get(user) or AccountState(user)
            new = after.get(user) or AccountState(user)
            if (old.role, old.teams) != (new.role, new.teams):
                changes.permissions.add(user)
                changes.users.add(user)
            elif (old.active, old.tokens_valid_after) != (new.active, new.tokens_valid_after):
                changes.users.add(user)
        return changes


def _default(state: AccountState) -> bool:
    """Whether ``state`` is what a user never changed has (nothing to keep)."""
    return (
        state.active and not state.tokens_valid_after and state.role is None and state.teams is None
    )
