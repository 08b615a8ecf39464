"""What the SCIM tests share: the secret, a recorder of account calls, raw
requests, and a snapshot of what is stored."""

from __future__ import annotations

from typing import Any

import httpx

from fieldpush.backend.directory import DirectoryEntry
from fieldpush.errors import BackendUnavailable
from tests.support.node import RunningNode

TOKEN = "scim-test-secret-0123456789abcdef-0123"
BASE = "/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
EXTENSION = "urn:fieldpush:params:scim:schemas:extension:fieldpush:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_body(name: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": name, "active": True, **fields}


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


class RecordingAccounts:
    """Records the account calls of SCIM (``node.accounts``), and passes them
    on to ``inner`` (the node's own service, which still does everything
    else: the node closes it); ``failing``
    makes every call raise BackendUnavailable first."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[Any, ...]] = []
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        """The rest of the service (``close``, ...) is the node's own."""
        return getattr(self.inner, name)

    async def set_active(self, user: str, active: bool, *, actor: str) -> None:
        if self.failing:
            raise BackendUnavailable("test: accounts unavailable")
        self.calls.append(("set_active", user, active, actor))
        await self.inner.set_active(user, active, actor=actor)

    async def assign(
        self, user: str, *, role: str | None, teams: tuple[str, ...] | None, actor: str
    ) -> None:
        if self.failing:
            raise BackendUnavailable("test: accounts unavailable")
        self.calls.append(("assign", user, role, teams, actor))
        await self.inner.assign(user, role=role, teams=teams, actor=actor)


def record_accounts(node: RunningNode) -> RecordingAccounts:
    """Put a recorder in front of the node's account service."""
    recorder = RecordingAccounts(node.node.accounts)
    node.node.accounts = recorder  # type: ignore[assignment]
    return recorder


async def stored(node: RunningNode) -> list[DirectoryEntry]:
    """Every entry of the node's directory."""
    entries: list[DirectoryEntry] = await node.node.backend.directory.page(0, 10_000)
    return entries


def assert_scim_error(reply: httpx.Response, status: int, scim_type: str | None) -> dict[str, Any]:
    """The reply is the RFC 7644 §3.12 error with this status and scimType."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/scim+json"
    body: dict[str, Any] = reply.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body
