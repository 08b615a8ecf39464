"""``AccessControl`` (fieldpush.delivery.access) on the memory backend's
accounts and a real registry: what it closes, and that a re-read never
undoes an announcement heard while it read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fieldpush.backend.base import AccessSnapshot, AccountState
from fieldpush.backend.memory.accounts import MemoryAccounts
from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.delivery.access import AccessControl
from fieldpush.delivery.registry import Registry
from fieldpush.errors import AccessRevoked
from fieldpush.identity.access import AccessList
from fieldpush.identity.auth import Identity
from fieldpush.trail.recorder import AuditRecorder


@dataclass(eq=False)
class FakeSession:
    id: str
    identity: Identity | None
    closed: list[tuple[int, str]] = field(default_factory=list)

    def close(self, code: int, reason: str) -> None:
        self.closed.append((int(code), reason))


def _recorder() -> AuditRecorder:
    """A recorder that is not started: entries wait (these tests do not read them)."""
    return AuditRecorder(MemoryAudit(), max_pending=1000)


def who(user: str, jti: str = "t") -> Identity:
    now = int(time.time())
    return Identity(user, "sales", frozenset(), now + 600.0, now, jti)


@pytest.fixture
async def control() -> AsyncIterator[tuple[AccessControl, AccessList, Registry[Any]]]:
    access, registry = AccessList(), Registry[Any]()
    accounts = MemoryAccounts()
    control = AccessControl(
        accounts, access, registry, reread_s=3600, revoked_ttl_s=60, audit=_recorder()
    )
    await control.start()
    try:
        yield control, access, registry
    finally:
        await control.close()


async def test_closes_the_users_sessions_and_no_others(
    control: tuple[AccessControl, AccessList, Registry[Any]],
) -> None:
    accounts, _, registry = control
    ann, ann2, bob = (
        FakeSession("1", who("ann")),
        FakeSession("2", who("ann")),
        FakeSession("3", who("bob")),
    )
    for session in (ann, ann2, bob):
        assert session.identity is not None
        registry.add_session(session, session.identity.user)
    await accounts.set_active("ann", False, actor="t")
    assert ann.closed == ann2.closed == [(4003, "account disabled")]
    assert bob.closed == []
    await accounts.revoke_token("t", actor="t")  # bob's jti: every session is checked
    assert bob.closed == [(4003, "token revoked")]


async def test_changed_permissions_close_with_1012(
    control: tuple[AccessControl, AccessList, Registry[Any]],
) -> None:
    accounts, _, registry = control
    ann = FakeSession("1", who("ann"))
    registry.add_session(ann, "ann")
    await accounts.assign("ann", role="supervisor", teams=None, actor="scim")
    assert ann.closed == [(1012, "permissions changed; resume")]


async def test_a_guarded_long_poll_fails_when_refused(
    control: tuple[AccessControl, AccessList, Registry[Any]],
) -> None:
    accounts, _, _ = control
    with accounts.guard(who("ann")) as ended, accounts.guard(who("bob")) as other:
        await accounts.set_active("ann", False, actor="t")
        with pytest.raises(AccessRevoked):
            await asyncio.wait_for(ended, 1)
        assert not other.done()
    assert other.cancelled()
    with accounts.guard(who("ann")) as late:  # refused already: failed at once
        assert isinstance(late.exception(), AccessRevoked)


async def test_a_re_read_keeps_what_was_announced_while_it_read() -> None:
    access, registry = AccessList(), Registry[Any]()
    accounts = MemoryAccounts()
    control = AccessControl(
        accounts, access, registry, reread_s=3600, revoked_ttl_s=60, audit=_recorder()
    )
    stale = await accounts.snapshot()  # before the disable
    disabled = AccountState("ann", active=False, tokens_valid_after=1)

    async def snapshot_overtaken() -> AccessSnapshot:
        control.on_account(disabled)  # the announcement arrives meanwhile
        return stale

    accounts.snapshot = snapshot_overtaken  # type: ignore[method-assign]
    await control.reread()
    with pytest.raises(AccessRevoked):
        access.check(who("ann"))
