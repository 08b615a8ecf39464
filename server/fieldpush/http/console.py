"""The dispatcher console: static files under ``GET /console`` (docs/operations.md).

The files live in the package (``fieldpush/console/``); only the names in
:data:`FILES` are served, so no request path reaches the file system. Every
answer carries a Content-Security-Policy that allows this origin only (no
inline script, no other host), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``. The console itself speaks the public
protocol and HTTP API only; it needs no route of its own beyond these files.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fieldpush.http.toolkit import HTTPError
from fieldpush_client.protocol import ErrorCode

__all__ = ["CONTENT_SECURITY_POLICY", "FILES", "console_routes"]

#: The servable files and their media types.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "socket.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
}

#: Same origin only; ``connect-src 'self'`` covers ws:/wss: to this host (CSP 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise HTTPError(404, ErrorCode.NOT_FOUND, f"no console file {name!r}")
    body = (files("fieldpush") / "console" / name).read_bytes()
    return Response(body, media_type=media_type, headers=_HEADERS)


async def console_index(request: Request) -> Response:
    return _file("index.html")


async def console_file(request: Request) -> Response:
    name = request.path_params["name"]
    return _file("index.html" if name == "" else name)


async def console_redirect(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308, headers=_HEADERS)


console_routes = [
    Route("/console", console_redirect, methods=["GET"]),
    Route("/console/", console_index, methods=["GET"]),
    Route("/console/{name}", console_file, methods=["GET"]),
]
