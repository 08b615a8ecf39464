"""What every HTTP route uses: one error type, one auth helper, one body reader.

The order of checks is the API's (docs/protocol.md section 2): authentication and
permission before the body, so 401/403 come first; then 413 (too large, also
when ``Content-Length`` says so before anything is read), 400 (not JSON, or
nested too deeply to parse) or 422 (JSON, but invalid; the message names the
field). Every error is ``{"error": {"code", "message"}}``: a route raises
:class:`HTTPError` for its own, and :data:`exception_handlers` answers those,
a backend outage the route does not answer itself (503 ``unavailable``),
Starlette's 404/405 and anything unexpected (500 ``internal``, details only in
the log).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from fieldpush.errors import AccessRevoked, AuthError, BackendUnavailable, FieldpushError
from fieldpush.identity.auth import Identity
from fieldpush.node import Node
from fieldpush.trail.refusals import reason_of
from fieldpush_client.protocol import (
    MAX_DEPTH,
    MAX_HTTP_DEVICE_LENGTH,
    DecodeError,
    ErrorCode,
    ProtocolError,
    check_depth,
    parse_channel,
)

__all__ = [
    "HTTPError",
    "Verifier",
    "authenticate",
    "caller",
    "check_channel",
    "decode_body",
    "device_of",
    "exception_handlers",
    "forbidden",
    "invalid",
    "node_of",
    "query_of",
    "read_body",
    "read_fields",
    "reject_unknown",
    "require_role",
    "unavailable",
]

log = logging.getLogger("fieldpush.api")


class HTTPError(FieldpushError):
    """Ends a request with ``status`` and the API's error body; ``message`` is
    safe to show to the client."""

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


def invalid(field: str, message: str) -> HTTPError:
    """422 ``invalid``, naming the field."""
    return HTTPError(422, ErrorCode.INVALID, f"{field}: {message}")


def forbidden(message: str) -> HTTPError:
    """403 ``forbidden``."""
    return HTTPError(403, ErrorCode.FORBIDDEN, message)


def unavailable(what: str = "retry") -> HTTPError:
    """503: the backend cannot serve now; ``what`` tells the client what to do."""
    return HTTPError(503, ErrorCode.UNAVAILABLE, f"backend unavailable; {what}")


def node_of(request: Request) -> Node:
    """The node the app's lifespan put in the request's state."""
    node: Node = request.state.node
    return node


# ------------------------------------------------------------------ auth


class Verifier(Protocol):
    """Checks a token (:class:`fieldpush.identity.auth.TokenVerifier`)."""

    def verify(self, token: str) -> Identity:
        """The token's identity; AuthError if it is not valid."""


def authenticate(
    verifier: Verifier,
    headers: list[str],
    where: str,
    refused: Callable[[str], None] | None = None,
) -> Identity:
    """The identity behind the request's one ``Authorization: Bearer`` header
    (``headers``: the values of every ``Authorization`` header sent), or a 401:
    none, more than one, not a bearer token, or a token the verifier refuses
    or breaks on (fail closed); a 403 ``account_disabled`` / ``token_revoked``
    for a valid token that may no longer act. Logged with ``where``, never
    with the token; each refusal is passed to ``refused`` with its reason
    (:func:`fieldpush.trail.refusals.reason_of`), for the audit trail."""
    note = refused or (lambda reason: None)
    if len(headers) > 1:
        log.info("%s refused: more than one Authorization header", where)
        note("invalid_token")
        raise HTTPError(401, ErrorCode.UNAUTHORIZED, "more than one Authorization header")
    scheme, _, token = (headers[0] if headers else "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        note(reason_of(None))
        raise HTTPError(
            401, ErrorCode.UNAUTHORIZED, "missing 'Authorization: Bearer <token>' header"
        )
    try:
        return verifier.verify(token.strip())
    except AccessRevoked as exc:
        log.info("%s refused: %s", where, exc)
        note(reason_of(exc))
        raise HTTPError(403, ErrorCode(exc.reason), str(exc)) from None
    except AuthError as exc:
        log.info("%s refused: %s", where, exc)
        note(reason_of(exc))
        raise HTTPError(401, ErrorCode.UNAUTHORIZED, str(exc)) from None
    except Exception:
        log.exception("%s refused: the token broke the verifier", where)
        note("invalid_token")
        raise HTTPError(401, ErrorCode.UNAUTHORIZED, "invalid token") from None


def caller(request: Request) -> tuple[Node, Identity]:
    """A Starlette request's node (:func:`node_of`) and the identity of its
    token (:func:`authenticate`), or a 401."""
    node = node_of(request)
    where = f"{request.method} {request.url.path}"
    headers = request.headers.getlist("authorization")
    source = request.client.host if request.client is not None else ""
    return node, authenticate(
        node.verifier, headers, where, lambda reason: node.login_refusals.note(source, reason)
    )


def require_role(identity: Identity, roles: frozenset[str], what: str) -> None:
    """403 ``role '<role>' may not <what>`` unless the identity's role is in ``roles``."""
    if identity.role not in roles:
        raise forbidden(f"role {identity.role!r} may not {what}")


# ------------------------------------------------------------------ body


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The request body from the ASGI ``receive``, read no further than
    ``limit`` bytes: 413 beyond it, also up front when the ``Content-Length``
    (``declared``; None: not sent) says so; 400 if the client disconnects first."""
    if declared is not None and declared > limit:
        raise HTTPError(413, ErrorCode.TOO_LARGE, f"body is {declared} bytes; the limit is {limit}")
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


def _not_json(body: str) -> HTTPError:
    return HTTPError(400, ErrorCode.BAD_REQUEST, f"body is not valid JSON: {body}")


def _no_constant(name: str) -> Any:
    raise _not_json(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _not_json(f"{text} is out of range")
    return value


def decode_body(body: bytes) -> dict[str, Any]:
    """A JSON object body, or 400 (not JSON: also ``NaN``, ``Infinity``, numbers
    out of range, nesting deeper than ``MAX_DEPTH``, the protocol's limit) or
    422 (not an object). Never another exception, whatever the bytes."""
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:  # json's JSONDecodeError, or an int of too many digits
        raise _not_json(str(exc)) from None
    except RecursionError:
        raise _not_json(f"nested deeper than {MAX_DEPTH} levels") from None
    try:
        check_depth(value)
    except DecodeError as exc:
        raise _not_json(str(exc)) from None
    if not isinstance(value, dict):
        raise HTTPError(422, ErrorCode.INVALID, "body must be a JSON object")
    return value


async def read_fields(request: Request, limit: int, known: frozenset[str]) -> dict[str, Any]:
    """A Starlette request's JSON object body (:func:`read_body`, :func:`decode_body`)
    with no field outside ``known`` (:func:`reject_unknown`)."""
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    body = decode_body(await read_body(request.receive, size, limit))
    reject_unknown(body, known)
    return body


def device_of(
    body: dict[str, Any], default: str | None, limit: int = MAX_HTTP_DEVICE_LENGTH
) -> str:
    """The body's ``device`` (``default`` when absent; required when None) of 1
    to ``limit`` characters (by default the protocol's limit for HTTP bodies), or 422."""
    device = body.get("device", default)
    if not isinstance(device, str) or not 0 < len(device) <= limit:
        raise invalid("device", f"must be a string of 1 to {limit} characters")
    return device


def reject_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    """422 naming the first field of ``body`` that is not in ``known``."""
    unknown = sorted(body.keys() - known)
    if unknown:
        raise invalid(unknown[0], f"unknown field (known: {', '.join(sorted(known))})")


def query_of(request: Request, known: frozenset[str]) -> dict[str, str]:
    """The request's query parameters, each given at most once and all in
    ``known``, or 422 naming the first that is not."""
    params = request.query_params
    for name in params:
        if name not in known:
            raise invalid(name, f"unknown parameter (known: {', '.join(sorted(known))})")
        if len(params.getlist(name)) > 1:
            raise invalid(name, "given more than once")
    return dict(params)


def check_channel(field: str, channel: object) -> None:
    """422 naming ``field`` unless ``channel`` is a valid channel name."""
    try:
        parse_channel(channel)
    except ProtocolError as exc:
        raise invalid(field, str(exc)) from None


# ------------------------------------------------------------------ errors


async def route_error(request: Request, exc: Exception) -> Response:
    """A route's :class:`HTTPError`, as its status, headers and JSON error body."""
    assert isinstance(exc, HTTPError)  # registered for that class only
    return exc.response()


async def backend_unavailable(request: Request, exc: Exception) -> Response:
    """A ``BackendUnavailable`` the route does not answer itself: :func:`unavailable`
    (503, ``retry``)."""
    return unavailable().response()


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as the API's JSON error body."""
    assert isinstance(exc, StarletteHTTPException)  # registered for that class only
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


#: For the Starlette app: every route's errors, Starlette's own, and the unexpected.
exception_handlers = {
    HTTPError: route_error,
    BackendUnavailable: backend_unavailable,
    StarletteHTTPException: http_exception,
    Exception: internal_error,
}
