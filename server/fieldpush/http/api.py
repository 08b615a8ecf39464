"""The HTTP API (PROTOCOL.md section 2): publish, poll, health, readiness, metrics.

Every call but health and metrics needs ``Authorization: Bearer <JWT>``.
Authentication and permission are checked before the body: 401/403 first,
then 400 (not JSON) or 422 (JSON, but invalid; the message names the field).
Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fieldpush.backend.base import Idempotency, PublishRequest, Tracking
from fieldpush.delivery.poll import poll
from fieldpush.errors import AuthError, BackendUnavailable, IdempotencyConflict
from fieldpush.events.event import encode_body
from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import PUBLISHER_ROLES, may_publish, may_subscribe
from fieldpush.node import Node
from fieldpush.settings import Settings
from fieldpush_client.protocol import ErrorCode, Priority, ProtocolError, parse_channel

__all__ = ["exception_handlers", "routes"]

log = logging.getLogger("fieldpush.api")

_PUBLISH_FIELDS = frozenset(
    {"channels", "kind", "priority", "data", "idempotency_key", "ack_deadline_s"}
)
_POLL_FIELDS = frozenset({"subs", "wait_s", "device"})
_PRIORITIES = frozenset(p.value for p in Priority)
MAX_KIND_LENGTH = 128
#: Longest ``device`` accepted in HTTP bodies (``/v1/poll``, ``/v1/ack``).
MAX_HTTP_DEVICE_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 200


class HTTPError(Exception):
    """Ends a request with ``status`` and an error body."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}

    @property
    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code.value, "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def node_of(request: Request) -> Node:
    node: Node = request.state.node
    return node


def authenticate(node: Node, header: str, where: str) -> Identity:
    """The identity behind an ``Authorization: Bearer`` header, or a 401."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPError(
            401, ErrorCode.UNAUTHORIZED, "missing 'Authorization: Bearer <token>' header"
        )
    try:
        return node.verifier.verify(token.strip())
    except AuthError as exc:
        log.info("%s refused: %s", where, exc)
        raise HTTPError(401, ErrorCode.UNAUTHORIZED, str(exc)) from None


def authenticate_request(request: Request) -> Identity:
    where = f"{request.method} {request.url.path}"
    return authenticate(node_of(request), request.headers.get("authorization", ""), where)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def decode_body(body: bytes, limit: int) -> dict[str, Any]:
    """A JSON object request body, or 413 (too large), 400 (not JSON), 422 (not an object)."""
    if len(body) > limit:
        raise HTTPError(
            413, ErrorCode.TOO_LARGE, f"body is {len(body)} bytes; the limit is {limit}"
        )
    try:
        value = json.loads(body, parse_constant=_not_json, parse_float=_finite_float)
    except ValueError as exc:
        raise HTTPError(400, ErrorCode.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HTTPError(422, ErrorCode.INVALID, "body must be a JSON object")
    return value


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object body, read no further than ``limit`` bytes
    (413 beyond it, also when ``Content-Length`` says so up front)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, ErrorCode.TOO_LARGE, f"body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, ErrorCode.TOO_LARGE, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return decode_body(b"".join(chunks), limit)


def invalid(field: str, message: str) -> HTTPError:
    return HTTPError(422, ErrorCode.INVALID, f"{field}: {message}")


def unavailable(what: str = "retry") -> HTTPError:
    """503: the backend cannot serve now; ``what`` tells the client what to do."""
    return HTTPError(503, ErrorCode.UNAVAILABLE, f"backend unavailable; {what}")


def device_of(body: dict[str, Any], default: str | None, limit: int) -> str:
    """The body's ``device`` (``default`` when absent; required when None), or 422."""
    device = body.get("device", default)
    if not isinstance(device, str) or not 0 < len(device) <= limit:
        raise invalid("device", f"must be a string of 1 to {limit} characters")
    return device


def reject_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(body.keys() - known)
    if unknown:
        raise invalid(unknown[0], f"unknown field (known: {', '.join(sorted(known))})")


# --------------------------------------------------------------------- publish


@dataclass(frozen=True, slots=True)
class PublishInput:
    channels: tuple[str, ...]
    kind: str
    priority: str
    data: dict[str, Any]
    idempotency_key: str | None
    ack_deadline_s: float | None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            [self.channels, self.kind, self.priority, self.data, self.ack_deadline_s],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_publish(body: dict[str, Any], max_channels: int) -> PublishInput:
    """Validate a publish body; raise a 422 :class:`HTTPError` naming the field."""
    reject_unknown(body, _PUBLISH_FIELDS)
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise invalid("channels", "must be a non-empty list of channel names")
    if len(channels) > max_channels:
        raise invalid("channels", f"at most {max_channels} channels per publish")
    for channel in channels:
        try:
            parse_channel(channel)
        except ProtocolError as exc:
            raise invalid("channels", str(exc)) from None
    if len(set(channels)) != len(channels):
        raise invalid("channels", "lists a channel twice")
    kind = body.get("kind")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_LENGTH:
        raise invalid("kind", f"must be a string of 1 to {MAX_KIND_LENGTH} characters")
    priority = body.get("priority", Priority.NORMAL.value)
    if not isinstance(priority, str) or priority not in _PRIORITIES:
        raise invalid("priority", f"must be one of {', '.join(p.value for p in Priority)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise invalid("data", "must be a JSON object")
    key = body.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH
    ):
        raise invalid(
            "idempotency_key", f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )
    deadline = body.get("ack_deadline_s")
    if deadline is not None:
        if priority != Priority.CRITICAL.value:
            raise invalid("ack_deadline_s", "is only allowed for critical events")
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
            raise invalid("ack_deadline_s", "must be a positive number of seconds")
    return PublishInput(
        channels=tuple(channels),
        kind=kind,
        priority=priority,
        data=data,
        idempotency_key=key,
        ack_deadline_s=float(deadline) if deadline is not None else None,
    )


def _tracking(settings: Settings, body: PublishInput) -> Tracking | None:
    """Critical events are tracked; their deadline: the publish's, else the kind's."""
    if body.priority != Priority.CRITICAL.value:
        return None
    deadline_s = body.ack_deadline_s
    if deadline_s is None:
        deadline_s = settings.ack_deadlines_s.get(body.kind, settings.default_ack_deadline_s)
    return Tracking(kind=body.kind, ack_deadline_ms=round(deadline_s * 1000))


async def publish(node: Node, identity: Identity, raw: bytes) -> dict[str, Any]:
    """Check, store and announce one publish; the 201 body. Raises HTTPError."""
    if identity.role not in PUBLISHER_ROLES:
        raise HTTPError(403, ErrorCode.FORBIDDEN, f"role {identity.role!r} may not publish")
    settings = node.settings
    body = parse_publish(
        decode_body(raw, settings.max_publish_bytes), settings.max_publish_channels
    )
    for channel in body.channels:
        if not may_publish(identity, channel):
            raise HTTPError(
                403, ErrorCode.FORBIDDEN, f"role {identity.role!r} may not publish to {channel}"
            )
    event_id = node.new_event_id()
    idempotency = None
    if body.idempotency_key is not None:
        idempotency = Idempotency(identity.user, body.idempotency_key, body.fingerprint())
    try:
        result = await node.backend.publish(
            PublishRequest(
                channels=body.channels,
                event_id=event_id,
                priority=body.priority,
                body=encode_body(event_id, body.kind, body.priority, body.data),
                idempotency=idempotency,
                tracking=_tracking(settings, body),
            )
        )
    except BackendUnavailable:
        log.warning("publish by %s refused: backend unavailable", identity.user)
        raise HTTPError(
            503,
            ErrorCode.UNAVAILABLE,
            "backend unavailable; the event may or may not be stored: "
            "retry with the same idempotency_key",
        ) from None
    except IdempotencyConflict:
        raise HTTPError(
            409, ErrorCode.CONFLICT, "idempotency_key was already used with a different body"
        ) from None
    if not result.duplicate:
        for channel in body.channels:
            node.metrics.published[channel.partition(":")[0]] += 1
    return {"id": result.id, "offsets": result.offsets}


class PublishEndpoint:
    """``POST /v1/publish`` as a plain ASGI app.

    The busiest HTTP call, so it skips Starlette's request, response and
    exception layers (measured: about a third of the CPU of a publish); the
    app factory routes it here before Starlette (:func:`fieldpush.app.create_app`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        node: Node = scope["state"]["node"]
        headers: dict[str, str] = {}
        try:
            authorization = ""
            declared = 0
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                elif name == b"content-length" and value.isdigit():
                    declared = int(value)
            identity = authenticate(node, authorization, "POST /v1/publish")
            if identity.role not in PUBLISHER_ROLES:  # before reading the body
                raise HTTPError(403, ErrorCode.FORBIDDEN, f"role {identity.role!r} may not publish")
            limit = node.settings.max_publish_bytes
            if declared > limit:
                raise HTTPError(
                    413, ErrorCode.TOO_LARGE, f"body is {declared} bytes; the limit is {limit}"
                )
            status, reply = 201, await publish(node, identity, await _read_body(receive, limit))
        except HTTPError as exc:
            node.metrics.publish_errors[exc.status] += 1
            status, reply, headers = exc.status, exc.body, exc.headers
        payload = json.dumps(reply, separators=(",", ":")).encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, ErrorCode.BAD_REQUEST, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, ErrorCode.TOO_LARGE, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# ------------------------------------------------------------------------ poll


async def poll_route(request: Request) -> Response:
    node = node_of(request)
    identity = authenticate_request(request)
    body = await read_json_body(request, node.settings.max_publish_bytes)
    reject_unknown(body, _POLL_FIELDS)
    subs = body.get("subs")
    if not isinstance(subs, dict) or not subs:
        raise invalid("subs", "must be a non-empty object {channel: offset-or-null}")
    if len(subs) > node.settings.max_publish_channels:
        raise invalid("subs", f"at most {node.settings.max_publish_channels} channels per poll")
    for channel, offset in subs.items():
        try:
            parse_channel(channel)
        except ProtocolError as exc:
            raise invalid("subs", str(exc)) from None
        if offset is not None and not isinstance(offset, str):
            raise invalid("subs", f"the offset of {channel} must be a string or null")
        if not may_subscribe(identity, channel):
            raise HTTPError(403, ErrorCode.FORBIDDEN, f"not allowed to read {channel}")
    wait_s = body.get("wait_s", 0)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or wait_s < 0:
        raise invalid("wait_s", "must be a number of seconds >= 0")
    wait_s = min(float(wait_s), node.settings.poll_max_wait_s)
    device = device_of(body, "poll", MAX_HTTP_DEVICE_LENGTH)
    try:
        reply = await poll(node, subs, wait_s, reader=(identity.user, device))
    except BackendUnavailable:
        raise unavailable() from None
    return JSONResponse(reply)


# -------------------------------------------------------------- health, metrics


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "node": node_of(request).settings.node_id})


async def readyz(request: Request) -> Response:
    node = node_of(request)
    ready = await node.backend.ready()
    body = {"ready": ready, "backend": node.backend.name, "node": node.settings.node_id}
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return PlainTextResponse(
        node_of(request).metrics.render(), media_type="text/plain; version=0.0.4"
    )


def guarded(endpoint: Any) -> Any:
    """``endpoint`` with its ``HTTPError`` answered as the JSON error body."""

    async def wrapper(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
        except HTTPError as exc:
            return exc.response()
        return response

    wrapper.__name__ = endpoint.__name__
    wrapper.__doc__ = endpoint.__doc__
    return wrapper


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as the API's JSON error body."""
    assert isinstance(exc, StarletteHTTPException)
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.BAD_REQUEST
    message = f"no route {request.method} {request.url.path}" + (
        "" if exc.status_code == 404 else f": {exc.detail}"
    )
    return JSONResponse(
        {"error": {"code": code.value, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected error, answered 500 ``internal`` (Starlette re-raises it
    afterwards, so uvicorn logs the traceback)."""
    body = {"error": {"code": ErrorCode.INTERNAL.value, "message": "internal error; see the logs"}}
    return JSONResponse(body, status_code=500)


exception_handlers = {StarletteHTTPException: http_exception, Exception: internal_error}

routes = [
    Route("/v1/publish", PublishEndpoint(), methods=["POST"]),
    Route("/v1/poll", guarded(poll_route), methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
