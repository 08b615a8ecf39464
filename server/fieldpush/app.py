"""The ASGI app and the uvicorn server that runs it.

:func:`create_app` builds the Starlette app: HTTP routes from :mod:`fieldpush.http.routes`
and a lifespan that owns the :class:`~fieldpush.node.Node` (in the app state
as ``"node"``, and its :class:`~fieldpush.transport.gateway.Gateway` as
``"gateway"``). :func:`build_server`
configures uvicorn with :class:`~fieldpush.transport.gateway.Connection` as its WebSocket
protocol, so ``/v1/ws`` bypasses ASGI (see :mod:`fieldpush.transport.gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from fieldpush.backend.base import Backend
from fieldpush.http.routes import PublishEndpoint, exception_handlers, routes
from fieldpush.node import Node, make_backend
from fieldpush.settings import Settings
from fieldpush.transport.gateway import WS_PATH, Connection, Gateway

__all__ = ["FieldpushServer", "build_server", "create_app"]

log = logging.getLogger("fieldpush")


def create_app(settings: Settings, backend: Backend | None = None) -> ASGIApp:
    """The app; the node (and the backend, unless given) is created at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Node | Gateway]]:
        node = Node(settings, backend if backend is not None else make_backend(settings))
        await node.start()
        try:
            # The HTTP routes read the node; the WebSocket connections only the gateway.
            yield {"node": node, "gateway": node.gateway}
        finally:
            await node.close()

    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=exception_handlers,
    )
    publish = PublishEndpoint()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # The publish hot path goes straight to its endpoint (see PublishEndpoint).
        if scope["type"] == "http" and scope["path"] == "/v1/publish" and scope["method"] == "POST":
            await publish(scope, receive, send)
        else:
            await starlette(scope, receive, send)

    return app


class FieldpushServer(uvicorn.Server):
    """uvicorn's server, reporting where it listens once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_listening = on_listening
        self.url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.url = f"http://{shown}:{port}"
            if self._on_listening is not None:
                self._on_listening(self.url)


def build_server(
    settings: Settings,
    *,
    backend: Backend | None = None,
    on_listening: Callable[[str], None] | None = None,
    sockets: Sequence[socket.socket] = (),
) -> FieldpushServer:
    """A uvicorn server for ``settings`` (``await server.serve()`` runs it)."""
    del sockets  # reserved for socket activation
    http: type[asyncio.Protocol] | str = "h11"  # h11 (no httptools, e.g. PyPy): no head guard
    if importlib.util.find_spec("httptools"):
        from fieldpush.transport.listener import GuardedHttpProtocol  # imports httptools

        http = GuardedHttpProtocol
    config = uvicorn.Config(
        create_app(settings, backend),
        host=settings.host,
        port=settings.port,
        ws=Connection,
        http=http,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        server_header=False,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.drain_deadline_s),
        backlog=4096,
    )
    return FieldpushServer(config, on_listening)


def describe(url: str, settings: Settings, backend_name: str) -> str:
    ws_url = url.replace("http://", "ws://", 1) + WS_PATH
    return (
        f"fieldpush listening on {url} (WebSocket {ws_url}), "
        f"node {settings.node_id}, backend {backend_name}"
    )
