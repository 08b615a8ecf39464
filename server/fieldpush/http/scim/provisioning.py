"""SCIM provisioning without HTTP: the user resources in the backend's directory,
and what each write does to the fieldpush account.

Order of a write: the resource is stored first (compare-and-set on its
version), then the account is told (:class:`AccountService`): ``assign`` the
role and teams and ``set_active`` (a disable before the assignment, an enable
after it). If that fails (``BackendUnavailable``), the request
answers 503 and the identity provider retries; a retried PUT or PATCH writes the
same resource again and tells the account again. ``active: false`` and DELETE
disable the account exactly as the admin API does: every socket of the user, on
every node, is closed with 4003, and their tokens are refused with 403
``account_disabled``. A DELETE removes the resource and leaves the account
disabled.

A write with ``If-Match`` (``expected``) that finds another version answers 412;
without one, a write that lost a race with another node's is judged again on
the new version (at most :data:`ATTEMPTS` times, then 409).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from scim2_models import SCIMException, ScimFilter
from scim2_models.path.expressions import Comparison

from fieldpush.backend.directory import (
    Directory,
    DirectoryEntry,
    NameTaken,
    VersionMismatch,
    Written,
)
from fieldpush.http.scim.errors import ScimError
from fieldpush.http.scim.resources import (
    Account,
    UserResource,
    account_of,
    decode,
    encode,
    user_key,
)

__all__ = ["ACTOR", "ATTEMPTS", "AccountService", "Provisioning"]

#: Writes judged again after losing a race, at most.
ATTEMPTS = 3
#: The actor that account changes are recorded with.
ACTOR = "scim"
#: Entries read per backend call while a filter is evaluated over all of them.
_SCAN_PAGE = 500


class AccountService(Protocol):
    """The node's account service (``node.accounts``): enable, disable, assign."""

    async def set_active(self, user: str, active: bool, *, actor: str) -> object:
        """Enable or disable ``user`` (disable: their sockets close with 4003 on
        every node, their tokens get 403). Raises BackendUnavailable."""

    async def assign(
        self, user: str, *, role: str | None, teams: tuple[str, ...] | None, actor: str
    ) -> object:
        """The directory's role and teams of ``user`` (None: the token's claims
        decide). Raises BackendUnavailable."""


def not_found(entry_id: str) -> ScimError:
    return ScimError(404, None, f"no User with id {entry_id!r}")


class Provisioning:
    """The SCIM operations on users; see the module docstring. Every method
    raises :class:`ScimError` for what the request got wrong, and
    ``BackendUnavailable`` when the backend cannot answer."""

    def __init__(self, directory: Directory, accounts: AccountService) -> None:
        self._directory = directory
        self._accounts = accounts

    async def create(self, resource: UserResource) -> DirectoryEntry:
        """Store a new resource (a new id) and apply its account; 409
        ``uniqueness`` if its ``userName`` is taken."""
        account = account_of(resource)
        now = _now_ms()
        entry = DirectoryEntry(
            secrets.token_hex(16),
            account.user,
            user_key(account.user),
            0,
            now,
            now,
            encode(resource),
        )
        result = await self._directory.put(entry, 0)
        if isinstance(result, NameTaken):
            raise ScimError(409, "uniqueness", f"userName {account.user!r} is taken")
        if not isinstance(result, Written):  # a new random id that exists: never
            raise ScimError(409, None, "id collision; retry")
        await self._apply(account)
        return result.entry

    async def get(self, entry_id: str) -> DirectoryEntry:
        """The entry, or 404."""
        entry = await self._directory.get(entry_id)
        if entry is None:
            raise not_found(entry_id)
        return entry

    async def replace(
        self, entry_id: str, resource: UserResource, expected: int | None
    ) -> DirectoryEntry:
        """PUT: the resource becomes ``resource``."""
        return await self._write(entry_id, expected, lambda _: resource)

    async def patch(
        self, entry_id: str, change: Callable[[UserResource], object], expected: int | None
    ) -> DirectoryEntry:
        """PATCH: ``change`` (a PatchOp's ``patch``) applied to the stored resource."""

        def patched(current: DirectoryEntry) -> UserResource:
            resource = decode(current)
            try:
                change(resource)
            except SCIMException as exc:
                raise ScimError.of(exc) from None
            return resource

        return await self._write(entry_id, expected, patched)

    async def _write(
        self,
        entry_id: str,
        expected: int | None,
        make: Callable[[DirectoryEntry], UserResource],
    ) -> DirectoryEntry:
        for _ in range(ATTEMPTS):
            current = await self._current(entry_id, expected)
            resource = make(current)
            account = account_of(resource)
            if account.user != current.user_name:
                raise ScimError(
                    400,
                    "mutability",
                    "userName cannot change: it is the fieldpush user id (the token subject); "
                    "delete the user and create another",
                )
            entry = DirectoryEntry(
                entry_id,
                account.user,
                user_key(account.user),
                0,
                current.created_ms,
                _now_ms(),
                encode(resource),
            )
            result = await self._directory.put(entry, current.version)
            if isinstance(result, Written):
                await self._apply(account)
                return result.entry
            if isinstance(result, VersionMismatch) and result.current == 0:
                raise not_found(entry_id)
            if expected is not None:
                raise ScimError(412, None, "the User changed since the version of If-Match")
        raise ScimError(409, None, "the User is changing concurrently; retry")

    async def delete(self, entry_id: str, expected: int | None) -> None:
        """Remove the resource and disable its account."""
        for _ in range(ATTEMPTS):
            current = await self._current(entry_id, expected)
            if await self._directory.delete(entry_id, current.version):
                await self._accounts.set_active(current.user_name, False, actor=ACTOR)
                return
            if expected is not None:
                raise ScimError(412, None, "the User changed since the version of If-Match")
        raise ScimError(409, None, "the User is changing concurrently; retry")

    async def _current(self, entry_id: str, expected: int | None) -> DirectoryEntry:
        current = await self.get(entry_id)
        if expected is not None and current.version != expected:
            raise ScimError(412, None, "the User changed since the version of If-Match")
        return current

    async def search(
        self, scim_filter: ScimFilter[UserResource] | None, offset: int, limit: int
    ) -> tuple[int, list[DirectoryEntry]]:
        """The number of entries that match, and up to ``limit`` of them after the
        first ``offset``, in id order. ``userName eq "…"`` is one lookup; any
        other filter is evaluated by scim2-models on every entry."""
        if scim_filter is None:
            total = await self._directory.count()
            return total, await self._directory.page(min(offset, total), limit)
        ast = scim_filter.ast
        if (
            isinstance(ast, Comparison)
            and ast.op.value == "eq"
            and ast.attr_path.uri is None
            and ast.attr_path.sub_attr is None
            and ast.attr_path.attr.casefold() == "username"
            and isinstance(ast.value, str)
        ):
            found = await self._directory.by_user_key(user_key(ast.value))
            matches = [found] if found is not None else []
        else:
            matches = [entry async for entry in self._matching(scim_filter)]
        return len(matches), matches[offset : offset + limit]

    async def _matching(
        self, scim_filter: ScimFilter[UserResource]
    ) -> AsyncIterator[DirectoryEntry]:
        offset = 0
        while page := await self._directory.page(offset, _SCAN_PAGE):
            offset += len(page)
            for entry in page:
                if scim_filter.match(decode(entry)):
                    yield entry

    async def _apply(self, account: Account) -> None:
        """Tell the account service; a disable first (so the user's sockets close
        with 4003, not first with 1012 for changed permissions), an enable last
        (so the user comes back with the new role and teams)."""
        if not account.active:
            await self._accounts.set_active(account.user, False, actor=ACTOR)
        await self._accounts.assign(
            account.user, role=account.role, teams=account.teams, actor=ACTOR
        )
        if account.active:
            await self._accounts.set_active(account.user, True, actor=ACTOR)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
