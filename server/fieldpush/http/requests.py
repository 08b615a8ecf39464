"""Request ids and CORS around the whole HTTP app (the publish fast path included).

:class:`RequestIds` gives every HTTP request an id: the client's
``X-Request-Id`` when it is a safe one (1 to :data:`MAX_REQUEST_ID_LENGTH`
characters of ``A-Z a-z 0-9 . _ : -``), else a new random one; a forged header
(control characters, a huge value) is replaced, never echoed. The id is in
the response's ``X-Request-Id`` header and, through
:data:`fieldpush.logs.REQUEST_ID`, in every log line written while the
request is served.

:func:`with_cors` adds Starlette's ``CORSMiddleware`` for the ``cors_origins``
setting: those origins get ``Access-Control-Allow-*`` answers (preflights
included), any other origin none; without the setting nothing changes.
"""

from __future__ import annotations

import re
import secrets
from typing import Final

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fieldpush.logs import REQUEST_ID
from fieldpush.settings import Settings

__all__ = ["MAX_REQUEST_ID_LENGTH", "RequestIds", "with_cors"]

#: The longest ``X-Request-Id`` echoed.
MAX_REQUEST_ID_LENGTH: Final = 128
_SAFE_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,%d}" % MAX_REQUEST_ID_LENGTH)
_HEADER: Final = b"x-request-id"


def request_id_of(scope: Scope) -> str:
    """The request's id: its own ``X-Request-Id`` when safe, else a new one."""
    for name, value in scope["headers"]:
        if name == _HEADER:
            if _SAFE_ID.fullmatch(value):
                return str(value, "ascii")
            break
    return secrets.token_hex(8)


class RequestIds:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        header = (_HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def with_cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind CORS for ``settings.cors_origins`` (``app`` itself without any)."""
    if not settings.cors_origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        allow_headers=["authorization", "content-type", "x-request-id", "idempotency-key"],
        expose_headers=["x-request-id", "retry-after"],
        max_age=600,
    )
