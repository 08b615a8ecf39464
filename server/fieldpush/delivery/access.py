"""Access control on this node: change it cluster-wide, keep the mirror true, enforce it.

:class:`AccessControl` is the node's ``accounts`` (the admin API and SCIM call
it). A change is stored in the backend (:class:`~fieldpush.backend.base.Accounts`),
which announces it to every node; each node applies it to its
:class:`~fieldpush.identity.access.AccessList` and ends, at once, what the
refused identity holds here:

- each of the user's sessions is closed with 4003 (``account disabled`` /
  ``token revoked``); a session whose role or teams changed (the directory's)
  is closed with 1012, to resume with its new permissions;
- each of the user's long-polls ends with 403 (:meth:`AccessControl.guard`).

Guarantees (docs/security.md, "Revocation"): the node that makes a change
applies it before the call returns; other nodes apply it when the
announcement arrives (milliseconds), and the announcement may be lost (Redis
pub/sub), so every node also re-reads the whole state after each reconnect
to Redis and every ``access_reread_s``: a revoked token works nowhere for
longer than that interval, plus one Redis timeout. A session opening while
a change arrives is checked again once registered
(:meth:`AccessControl.admit`), so it cannot slip between the check and the kick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from fieldpush.backend.base import (
    AccountChange,
    Accounts,
    AccountState,
    RevokedToken,
)
from fieldpush.delivery.registry import Registry
from fieldpush.errors import AccessRevoked, BackendUnavailable
from fieldpush.identity.access import AccessList, Changes
from fieldpush.identity.auth import Identity
from fieldpush.tasks import stop
from fieldpush.trail.recorder import AuditRecorder
from fieldpush_client.protocol import CloseCode

__all__ = ["AccessControl"]

log = logging.getLogger("fieldpush.access")

#: Wipes a node remembers for sessions opening while they were marked.
_MAX_WIPES_HELD = 10_000


def _changed(before: AccountState, after: AccountState) -> dict[str, tuple[object, object]]:
    """The access fields that differ: ``{name: (old, new)}``."""
    old, new = before.as_dict(), after.as_dict()
    return {
        name: (old.get(name), new.get(name))
        for name in ("active", "tokens_valid_after", "role", "teams")
        if old.get(name) != new.get(name)
    }


def _by(actor: str, role: str) -> str:
    """``changed_by`` of an account: ``ann (admin)``, or the actor alone."""
    return f"{actor} ({role})" if role else actor


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AccessControl:
    """See the module docstring."""

    def __init__(
        self,
        accounts: Accounts,
        access: AccessList,
        registry: Registry[Any],
        *,
        reread_s: float,
        revoked_ttl_s: float,
        audit: AuditRecorder,
    ) -> None:
        self._accounts = accounts
        self._audit = audit
        self._access = access
        self._registry = registry
        self._reread_s = reread_s
        self._revoked_ttl_ms = int(revoked_ttl_s * 1000)
        #: Long-polls by user: a future that fails with the refusal that ends
        #: the poll, and the identity it polls as.
        self._polls: dict[str, dict[asyncio.Future[None], Identity]] = {}
        self._task: asyncio.Task[None] | None = None
        self._resync = asyncio.Event()
        #: Wipes heard, by (user, device): the id (oldest out beyond the bound).
        self._wipes: dict[tuple[str, str], str] = {}
        #: While a re-read waits for its snapshot: the announcements heard meanwhile.
        self._heard: list[AccountState | RevokedToken] | None = None
        accounts.listen(self)

    # ---------------------------------------------------------------- changes

    async def set_active(
        self, user: str, active: bool, *, actor: str, role: str = ""
    ) -> AccountState:
        """Enable or disable ``user`` cluster-wide. Disabling also refuses every
        token issued up to the end of this second (``iat`` counts whole
        seconds), so re-enabling needs a token issued after the disable."""
        now = _now_ms()
        change = AccountChange(
            user,
            at=now,
            by=_by(actor, role),
            active=active,
            tokens_valid_after=0 if active else (now // 1000 + 1) * 1000,
        )
        action = "account.enable" if active else "account.disable"
        state = await self._change(change, action, actor, role)
        log.info("user %s %s by %s", user, "enabled" if active else "disabled", actor)
        return state

    async def revoke_issued_before(
        self, user: str, before_ms: int, *, actor: str, role: str = ""
    ) -> AccountState:
        """Refuse ``user``'s tokens issued (``iat``) before ``before_ms``."""
        state = await self._change(
            AccountChange(user, at=_now_ms(), by=_by(actor, role), tokens_valid_after=before_ms),
            "token.revoke_issued_before",
            actor,
            role,
        )
        log.info("tokens of user %s issued before %d revoked by %s", user, before_ms, actor)
        return state

    async def assign(
        self,
        user: str,
        *,
        role: str | None,
        teams: tuple[str, ...] | None,
        actor: str,
        actor_role: str = "",
    ) -> AccountState:
        """The directory's role and teams for ``user`` (None: the token's claims)."""
        state = await self._change(
            AccountChange(user, at=_now_ms(), by=_by(actor, actor_role), role=role, teams=teams),
            "account.assign",
            actor,
            actor_role,
        )
        log.info("user %s: role %s, teams %s, set by %s", user, role, teams, actor)
        return state

    async def revoke_token(self, jti: str, *, actor: str, role: str = "") -> RevokedToken:
        """Refuse the token with that ``jti``, for ``revoked_token_ttl_s``."""
        self._audit.require()
        token = RevokedToken(jti, _now_ms() + self._revoked_ttl_ms)
        try:
            await self._accounts.revoke(token)
        except BackendUnavailable:
            self._audit.record(
                actor=actor, role=role, action="token.revoke", target=f"token/{jti}",
                outcome="failed:backend_unavailable",
            )  # fmt: skip
            raise
        self._audit.record(
            actor=actor, role=role, action="token.revoke", target=f"token/{jti}",
            outcome="ok", fields={"until": (None, token.until)},
        )  # fmt: skip
        self.on_revoked(token)
        log.info("token %s revoked by %s", jti, actor)
        return token

    async def state(self, user: str) -> AccountState:
        """``user``'s state as stored (raises BackendUnavailable)."""
        return await self._accounts.state(user)

    async def _change(
        self, change: AccountChange, action: str, actor: str, role: str
    ) -> AccountState:
        """Apply ``change`` and record it in the audit trail (``fields``: each
        field it changed, the old value as read just before)."""
        self._audit.require()
        target = f"user/{change.user}"
        try:
            before = await self._accounts.state(change.user)
            state = await self._accounts.change(change)
        except BackendUnavailable:
            self._audit.record(
                actor=actor, role=role, action=action, target=target,
                outcome="failed:backend_unavailable",
            )  # fmt: skip
            raise
        self._audit.record(
            actor=actor, role=role, action=action, target=target, outcome="ok",
            fields=_changed(before, state),
        )  # fmt: skip
        self.on_account(state)  # here at once, whatever pub/sub does
        return state

    # ------------------------------------------- announcements (AccessListener)

    def on_account(self, state: AccountState) -> None:
        if self._heard is not None:
            self._heard.append(state)
        self._enforce(self._access.apply(state))

    def on_revoked(self, token: RevokedToken) -> None:
        if self._heard is not None:
            self._heard.append(token)
        self._enforce(self._access.revoke(token))

    def on_wipe(self, user: str, device: str, wipe_id: str) -> None:
        self._wipes[(user, device)] = wipe_id
        while len(self._wipes) > _MAX_WIPES_HELD:
            del self._wipes[next(iter(self._wipes))]
        for session in self._registry.sessions_of(user):
            if session.device == device:
                log.info("session %s of %s: device %s told to wipe", session.id, user, device)
                session.wipe(wipe_id)

    def on_access_resync(self) -> None:
        self._resync.set()

    # ------------------------------------------------------------- enforcing

    def admit(self, identity: Identity) -> Identity:
        """Check a session's identity again once it is registered (a change
        that arrived while it opened found nothing to close); raises
        :class:`AccessRevoked`."""
        return self._access.check(identity)

    def wipe_pending(self, user: str, device: str) -> str | None:
        """The id of a wipe of that device heard since this node started (a
        session that opened while the wipe was marked finds it here)."""
        return self._wipes.get((user, device))

    @contextlib.contextmanager
    def guard(self, identity: Identity) -> Iterator[asyncio.Future[None]]:
        """A future that fails with :class:`AccessRevoked` when ``identity``
        is refused while the block runs, or already is (a long-poll waits on
        it beside its events)."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        polls = self._polls.setdefault(identity.user, {})
        polls[ended] = identity
        try:
            try:
                self._access.check(identity)
            except AccessRevoked as exc:  # changed since the request's own check
                ended.set_exception(exc)
            yield ended
        finally:
            polls.pop(ended, None)
            if not polls:
                self._polls.pop(identity.user, None)
            if ended.done():
                ended.exception()  # retrieved: the block may not have waited on it
            else:
                ended.cancel()

    def _enforce(self, changes: Changes) -> None:
        """End what the access list no longer allows: the sessions (4003) and
        long-polls it refuses, and the sessions whose permissions changed (1012)."""
        registry = self._registry
        if changes.any_token:
            sessions, users = registry.sessions(), list(self._polls)
        else:
            sessions = [s for user in changes.users for s in registry.sessions_of(user)]
            users = list(changes.users)
        for session in sessions:
            identity = session.identity
            if identity is None:
                continue
            try:
                self._access.check(identity)
            except AccessRevoked as exc:
                log.info("session %s of %s closed: %s", session.id, identity.user, exc)
                session.close(CloseCode.FORBIDDEN, str(exc))
                continue
            if identity.user in changes.permissions:
                log.info("session %s of %s closed: permissions changed", session.id, identity.user)
                session.close(CloseCode.SERVICE_RESTART, "permissions changed; resume")
        for user in users:
            for ended, identity in list(self._polls.get(user, {}).items()):
                if ended.done():
                    continue
                try:
                    self._access.check(identity)
                except AccessRevoked as exc:
                    log.info("long-poll of %s ended: %s", user, exc)
                    ended.set_exception(exc)

    # ------------------------------------------------------------- re-reading

    async def start(self) -> None:
        """Read the whole state now (before the node takes connections), then
        every ``access_reread_s`` and after each resync request. With the
        backend down the node starts anyway, as it does for events, and reads
        it as soon as the backend is back."""
        try:
            await self.reread()
        except BackendUnavailable as exc:
            log.warning("access state not read at start: %s; retrying in the background", exc)
            self._resync.set()
        self._task = asyncio.get_running_loop().create_task(self._reread(), name="access")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def reread(self) -> None:
        """Replace the access list with the backend's state and enforce what
        changed. Announcements heard while the snapshot was read may be newer
        than it: they are applied again after it, in order."""
        heard: list[AccountState | RevokedToken] = []
        self._heard = heard
        try:
            snapshot = await self._accounts.snapshot()
        finally:
            self._heard = None
        changes = self._access.replace(snapshot)
        for item in heard:
            if isinstance(item, AccountState):
                changes.merge(self._access.apply(item))
            else:
                changes.merge(self._access.revoke(item))
        self._enforce(changes)

    async def _reread(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync.wait(), self._reread_s)
            self._resync.clear()
            try:
                await self.reread()
            except BackendUnavailable as exc:
                log.warning("access state not re-read: %s; retrying", exc)
                await asyncio.sleep(min(self._reread_s, 1.0))
                self._resync.set()
            except Exception:
                log.exception("access state not re-read")
