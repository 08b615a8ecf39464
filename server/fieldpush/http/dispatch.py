"""The dispatcher's read calls: receipts and presence (docs/protocol.md section 2).

- ``GET /v1/events/{id}/receipts`` (dispatcher, service, admin): per recipient
  user of a critical event, its first delivery and first ack, and the device.
- ``POST /v1/ack`` (any role; an extension): the socket's ``ack`` for a
  phone on the poll fallback.
- ``GET /v1/presence?channel=`` and ``GET /v1/presence/users/{id}``
  (dispatcher, supervisor, admin): who is online, on which devices, since
  when, last seen; cluster-wide.

Receipts are kept for ``critical`` events (the tracked ones) for
``receipts_ttl_s``; any other id answers 404.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.backend.base import PresenceEntry
from fieldpush.errors import BackendUnavailable
from fieldpush.http.toolkit import (
    HTTPError,
    caller,
    check_channel,
    device_of,
    forbidden,
    invalid,
    read_fields,
    require_role,
)
from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import VIEWER_ROLES, may_see_presence, presence_teams
from fieldpush.node import Node
from fieldpush_client.protocol import MAX_ACK_IDS, MAX_EVENT_ID_LENGTH, ErrorCode

__all__ = ["dispatch_routes"]

#: Who may read receipts (docs/protocol.md section 2).
RECEIPT_ROLES = frozenset({"dispatcher", "service", "admin"})
_ACK_FIELDS = frozenset({"ids", "device"})


async def receipts(request: Request) -> Response:
    node, identity = caller(request)
    require_role(identity, RECEIPT_ROLES, "read receipts")
    event_id = request.path_params["id"]
    found = await node.backend.ledger.receipts(event_id)
    if found is None:
        raise HTTPError(
            404,
            ErrorCode.NOT_FOUND,
            f"no receipts for event {event_id}: receipts are kept for critical events, "
            f"for {node.settings.receipts_ttl_s:g} s",
        )
    return JSONResponse(
        {
            "id": found.id,
            "kind": found.kind,
            "published_at": found.published_at,
            "deadline_at": found.deadline_at,
            "recipients": [r.as_dict() for r in found.recipients],
        }
    )


async def ack(request: Request) -> Response:
    """Record the caller's acks, as the socket's ``ack`` does: 204 once recorded."""
    node, identity = caller(request)
    body = await read_fields(request, node.settings.max_publish_bytes, _ACK_FIELDS)
    ids = body.get("ids")
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_ACK_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= MAX_EVENT_ID_LENGTH for i in ids)
    ):
        raise invalid("ids", f"must be a list of 1 to {MAX_ACK_IDS} event ids")
    device = device_of(body, None)
    node.metrics.acks += len(ids)
    try:
        await node.dispatch.acked(identity.user, device, ids)
    except BackendUnavailable:
        raise HTTPError(
            503, ErrorCode.UNAVAILABLE, "ack not recorded: backend unavailable; ack again"
        ) from None
    return Response(status_code=204)


def _device(entry: PresenceEntry) -> dict[str, Any]:
    return {
        "device": entry.device,
        "session": entry.session,
        "node": entry.node,
        "since": entry.since,
        "last_seen": entry.last_seen,
    }


async def presence_of_channel(request: Request) -> Response:
    node, identity = caller(request)
    require_role(identity, VIEWER_ROLES, "read presence")
    channel = request.query_params.get("channel")
    if not channel:
        raise invalid("channel", "required query parameter")
    check_channel("channel", channel)
    if not may_see_presence(identity, channel):
        raise forbidden(f"may not read the presence of {channel}")
    entries = await node.backend.presence.of_channel(channel)
    users: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        users[entry.user].append(_device(entry))
    return JSONResponse(
        {
            "channel": channel,
            "users": [{"user": u, "devices": devices} for u, devices in sorted(users.items())],
        }
    )


async def presence_of_user(request: Request) -> Response:
    node, identity = caller(request)
    require_role(identity, VIEWER_ROLES, "read presence")
    user = request.path_params["id"]
    if await _may_see_user(node, identity, user):
        entries, last_seen = await node.backend.presence.of_user(user)
    else:  # answered as for a user never seen: nothing about other teams leaks
        entries, last_seen = [], None
    return JSONResponse(
        {
            "user": user,
            "online": bool(entries),
            "last_seen": last_seen,
            "devices": [_device(entry) for entry in entries],
        }
    )


async def _may_see_user(node: Node, identity: Identity, user: str) -> bool:
    """Whether ``identity`` may read ``user``'s presence: always for
    dispatchers and admins; for a supervisor, while ``user`` is connected to
    one of the supervisor's ``team:`` channels. Raises BackendUnavailable."""
    teams = presence_teams(identity)
    if teams is None:
        return True
    for team in sorted(teams):
        if any(
            entry.user == user for entry in await node.backend.presence.of_channel(f"team:{team}")
        ):
            return True
    return False


dispatch_routes = [
    Route("/v1/ack", ack, methods=["POST"]),
    Route("/v1/events/{id}/receipts", receipts, methods=["GET"]),
    Route("/v1/presence", presence_of_channel, methods=["GET"]),
    Route("/v1/presence/users/{id}", presence_of_user, methods=["GET"]),
]
