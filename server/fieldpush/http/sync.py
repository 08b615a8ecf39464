"""Delta sync over HTTP (docs/protocol.md sections 2 and 3, docs/sync.md).

- ``POST /v1/sync/push`` (any role): the body and reply of ``mutate``
  (``{mutations, id?, device?}`` -> ``{id, results}``); ``device`` names the
  sending device for idempotency and stamps (default ``http``).
- ``POST /v1/sync/pull`` (any role): the body and reply of ``pull``
  (``{cursor?, types?, limit?, classes?}`` -> ``{changes, cursor, more}``); a cursor too
  old answers 409 ``resync``.
- ``PUT /v1/records/{type}/{id}`` (service): the CRM writes a record,
  ``{fields}`` -> ``{type, rid, fields}``.
- ``GET /v1/changes?cursor=&limit=`` (service): the change feed.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.errors import BackendUnavailable
from fieldpush.http.toolkit import (
    HTTPError,
    caller,
    device_of,
    forbidden,
    invalid,
    read_fields,
    unavailable,
)
from fieldpush.sync.engine import actor_of
from fieldpush.sync.errors import SyncError
from fieldpush_client.protocol import (
    MAX_DEVICE_LENGTH,
    MAX_ID_LENGTH,
    ErrorCode,
    ProtocolError,
    parse_classes,
    parse_digest,
    parse_mutate,
    parse_repair,
)

__all__ = ["sync_routes"]

T = TypeVar("T")

_PUSH_FIELDS = frozenset({"mutations", "id", "device"})
_PULL_FIELDS = frozenset({"cursor", "types", "limit", "classes", "digest", "repair", "id"})
_STATUS = {
    ErrorCode.RESYNC: 409,
    ErrorCode.BAD_REQUEST: 422,
    ErrorCode.INVALID: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FORBIDDEN: 403,
}


def _refused(exc: SyncError) -> HTTPError:
    code = ErrorCode.INVALID if exc.code == ErrorCode.BAD_REQUEST else exc.code
    return HTTPError(_STATUS.get(exc.code, 422), code, exc.message)


async def _answer(work: Awaitable[T], retry: str) -> T:
    """The engine's answer; its refusal or a backend outage as the HTTP error
    (``retry`` tells the client what to do then)."""
    try:
        return await work
    except SyncError as exc:
        raise _refused(exc) from None
    except BackendUnavailable:
        raise unavailable(retry) from None


def _service_only(role: str, what: str) -> None:
    if role != "service":
        raise forbidden(f"only the CRM (role service) may {what}")


async def push(request: Request) -> Response:
    node, identity = caller(request)
    body = await read_fields(request, node.settings.sync_max_body_bytes, _PUSH_FIELDS)
    device = device_of(body, "http", MAX_DEVICE_LENGTH)
    actor = actor_of(identity, device)
    try:
        message = parse_mutate({"type": "mutate", "id": body.get("id", 0), **body})
    except ProtocolError as exc:
        sent = body.get("mutations")
        count = len(sent) if isinstance(sent, list) else None
        node.sync.refuse_batch(actor, ErrorCode.BAD_REQUEST, count)
        raise HTTPError(422, ErrorCode.INVALID, str(exc)) from None
    limit = node.settings.sync_max_mutations
    if len(message.mutations) > limit:
        node.sync.refuse_batch(actor, ErrorCode.TOO_LARGE, len(message.mutations))
        raise HTTPError(413, ErrorCode.TOO_LARGE, f"at most {limit} mutations per push")
    results = await _answer(
        node.sync.mutate(actor, message.mutations),
        "send the mutations again (same mids)",
    )
    return JSONResponse({"id": message.id, "results": results})


def _optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise invalid(name, what)
    return value


async def pull(request: Request) -> Response:
    node, identity = caller(request)
    body = await read_fields(request, node.settings.sync_max_body_bytes, _PULL_FIELDS)
    cursor = _optional(body, "cursor", str, "must be a cursor from an earlier reply, or null")
    types = _optional(body, "types", list, "must be a list of record types")
    if types is not None and not all(isinstance(t, str) for t in types):
        raise invalid("types", "must be a list of record types")
    limit = _optional(body, "limit", int, "must be a positive integer")
    if limit is not None and limit < 1:
        raise invalid("limit", "must be a positive integer")
    try:
        classes = parse_classes(body.get("classes"))
    except ValueError as exc:
        raise invalid("classes", str(exc).removeprefix("'classes' ")) from None
    try:
        digest, repair = parse_digest(body.get("digest")), parse_repair(body.get("repair"))
    except ValueError as exc:
        raise HTTPError(422, ErrorCode.INVALID, str(exc)) from None
    reply = await _answer(
        node.sync.pull(actor_of(identity, "http"), cursor, types, limit, classes, digest, repair),
        "pull again",
    )
    if "id" in body:
        reply = {"id": body["id"], **reply}
    return JSONResponse(reply)


async def put_record(request: Request) -> Response:
    node, identity = caller(request)
    _service_only(identity.role, "write records")
    body = await read_fields(request, node.settings.sync_max_body_bytes, frozenset({"fields"}))
    fields = body.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise invalid("fields", "must be an object {name: value} with at least one field")
    record_type, rid = request.path_params["type"], request.path_params["id"]
    if not 0 < len(rid) <= MAX_ID_LENGTH:
        raise invalid("id", f"a record id has 1 to {MAX_ID_LENGTH} characters")
    reply = await _answer(
        node.sync.put_record(actor_of(identity, "crm"), record_type, rid, fields), "write it again"
    )
    return JSONResponse(reply)


async def changes(request: Request) -> Response:
    node, identity = caller(request)
    _service_only(identity.role, "read the change feed")
    cursor = request.query_params.get("cursor") or None
    raw_limit = request.query_params.get("limit")
    limit = None
    if raw_limit is not None:
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise invalid("limit", "must be a positive integer")
        limit = int(raw_limit)
    reply = await _answer(node.sync.feed(cursor, limit), "read again")
    return JSONResponse(reply)


sync_routes = [
    Route("/v1/sync/push", push, methods=["POST"]),
    Route("/v1/sync/pull", pull, methods=["POST"]),
    Route("/v1/records/{type}/{id}", put_record, methods=["PUT"]),
    Route("/v1/changes", changes, methods=["GET"]),
]
