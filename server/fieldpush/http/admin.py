"""The admin API of accounts and tokens (docs/protocol.md section 2, "Admin").

- ``POST /v1/admin/users/{id}/disable``: the user's tokens are refused on every
  node (403 ``account_disabled``), their sockets closed with 4003, their
  long-polls ended; tokens issued up to then stay refused after ``enable``.
- ``POST /v1/admin/users/{id}/enable``: new tokens work again.
- ``POST /v1/admin/tokens/revoke``: ``{"jti": ...}`` refuses that one token;
  ``{"user": ..., "issued_before": ms}`` (default: now) every token of the
  user issued before then (403 ``token_revoked``, open sockets 4003).
- ``GET /v1/admin/users/{id}``: the user's state and devices online.
- ``GET /v1/admin/users/{id}/devices``: every device the user opened a
  session from: ``[{device, first_seen, last_seen, node, app, state, wipe_id,
  online}]``.
- ``POST /v1/admin/users/{id}/devices/{device}/wipe`` (admin only): the
  device is marked ``wipe_pending`` and gets ``wipe`` at once wherever it is
  connected, else right after its next ``hello``; its ``wiped`` makes it
  ``wiped``, and its later hellos are refused with 4003.

Admin and service tokens only. Each answer is the state after the change,
stored in the backend before the reply; a 503 means it may not be stored
(each call is safe to repeat).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.backend.base import AccountState
from fieldpush.errors import BackendUnavailable
from fieldpush.http.toolkit import HTTPError, caller, invalid, read_fields, require_role
from fieldpush.identity.auth import MAX_TOKEN_ID_LENGTH, Identity
from fieldpush.node import Node
from fieldpush_client.protocol import MAX_DEVICE_LENGTH, ErrorCode, is_channel

__all__ = ["ADMIN_ROLES", "admin_routes"]

log = logging.getLogger("fieldpush.api")

#: Who may call the admin API.
ADMIN_ROLES = frozenset({"admin", "service"})
#: Who may wipe a device: people, not integrations.
_WIPE_ROLES = frozenset({"admin"})
_REVOKE_FIELDS = frozenset({"jti", "user", "issued_before"})
#: Times are ms since the epoch, integers below 2**53 (exact in JSON everywhere).
_MAX_MS = 2**53


def _admin(request: Request, what: str) -> tuple[Node, Identity]:
    node, identity = caller(request)
    require_role(identity, ADMIN_ROLES, what)
    return node, identity


def _actor(identity: Identity) -> str:
    return f"{identity.user} ({identity.role})"


def _user_id(value: object, field: str) -> str:
    """A user id as tokens carry it in ``sub``, or 422 naming ``field``."""
    if not isinstance(value, str) or not is_channel(f"user:{value}"):
        raise invalid(field, "must be a user id: no spaces or control characters")
    return value


def _not_stored(what: str) -> HTTPError:
    return HTTPError(
        503, ErrorCode.UNAVAILABLE, f"{what} may not be stored: backend unavailable; repeat it"
    )


def _state(state: AccountState) -> dict[str, Any]:
    return state.as_dict()


async def _set_active(request: Request, active: bool) -> Response:
    node, identity = _admin(request, "disable or enable users")
    user = _user_id(request.path_params["id"], "id")
    try:
        state = await node.accounts.set_active(
            user, active, actor=identity.user, role=identity.role
        )
    except BackendUnavailable:
        raise _not_stored("the change") from None
    return JSONResponse(_state(state))


async def disable(request: Request) -> Response:
    return await _set_active(request, False)


async def enable(request: Request) -> Response:
    return await _set_active(request, True)


async def revoke(request: Request) -> Response:
    node, identity = _admin(request, "revoke tokens")
    body = await read_fields(request, node.settings.max_publish_bytes, _REVOKE_FIELDS)
    actor, role = identity.user, identity.role
    jti = body.get("jti")
    try:
        if jti is not None:
            if body.keys() != {"jti"}:
                raise invalid("jti", "give either {jti} or {user, issued_before}, not both")
            if not isinstance(jti, str) or not 0 < len(jti) <= MAX_TOKEN_ID_LENGTH:
                raise invalid("jti", f"must be a string of 1 to {MAX_TOKEN_ID_LENGTH} characters")
            token = await node.accounts.revoke_token(jti, actor=actor, role=role)
            return JSONResponse({"jti": token.jti, "until": token.until})
        if "user" not in body:
            raise invalid("user", "required: give {jti} or {user, issued_before}")
        user = _user_id(body["user"], "user")
        before = body.get("issued_before", time.time_ns() // 1_000_000)
        if type(before) is not int or not 0 <= before < _MAX_MS:
            raise invalid("issued_before", "must be a time in ms since the epoch")
        state = await node.accounts.revoke_issued_before(user, before, actor=actor, role=role)
    except BackendUnavailable:
        raise _not_stored("the revocation") from None
    return JSONResponse(_state(state))


async def show(request: Request) -> Response:
    node, _ = _admin(request, "read users")
    user = _user_id(request.path_params["id"], "id")
    state = await node.accounts.state(user)
    entries, last_seen = await node.backend.presence.of_user(user)
    return JSONResponse(
        {
            **_state(state),
            "online": bool(entries),
            "last_seen": last_seen,
            "devices": [
                {"device": e.device, "session": e.session, "node": e.node, "since": e.since}
                for e in entries
            ],
        }
    )


async def devices(request: Request) -> Response:
    node, _ = _admin(request, "read devices")
    user = _user_id(request.path_params["id"], "id")
    registered = await node.backend.devices.of_user(user)
    online = {entry.device for entry in (await node.backend.presence.of_user(user))[0]}
    return JSONResponse(
        [{**device.as_dict(), "online": device.device in online} for device in registered]
    )


async def wipe(request: Request) -> Response:
    node, identity = caller(request)
    require_role(identity, _WIPE_ROLES, "wipe devices")
    user = _user_id(request.path_params["id"], "id")
    device = request.path_params["device"]
    if not 0 < len(device) <= MAX_DEVICE_LENGTH:
        raise invalid("device", f"must be a device id of 1 to {MAX_DEVICE_LENGTH} characters")
    node.audit.require()
    audit: dict[str, Any] = {
        "actor": identity.user, "role": identity.role, "action": "device.wipe",
        "target": f"device/{user}/{device}",
    }  # fmt: skip
    wipe_id = f"w-{uuid.uuid4().hex}"
    try:
        marked = await node.backend.devices.mark_wipe(user, device, wipe_id)
    except BackendUnavailable:
        node.audit.record(**audit, outcome="failed:backend_unavailable")
        raise _not_stored("the wipe") from None
    if marked is None:
        node.audit.record(**audit, outcome="refused:not_found")
        raise HTTPError(404, ErrorCode.NOT_FOUND, f"user {user} has no device {device}")
    node.audit.record(
        **audit, outcome="ok", fields={"state": (None, "wipe_pending"), "wipe_id": (None, wipe_id)}
    )
    log.info("device %s of %s marked for wipe by %s", device, user, _actor(identity))
    return JSONResponse(marked.as_dict(), status_code=202)


admin_routes = [
    Route("/v1/admin/users/{id}", show, methods=["GET"]),
    Route("/v1/admin/users/{id}/devices", devices, methods=["GET"]),
    Route("/v1/admin/users/{id}/devices/{device}/wipe", wipe, methods=["POST"]),
    Route("/v1/admin/users/{id}/disable", disable, methods=["POST"]),
    Route("/v1/admin/users/{id}/enable", enable, methods=["POST"]),
    Route("/v1/admin/tokens/revoke", revoke, methods=["POST"]),
]
