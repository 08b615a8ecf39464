"""The ASGI app and the uvicorn server that runs it.

:func:`create_app` builds the Starlette app: HTTP routes from :mod:`fieldpush.http.routes`
and a lifespan that owns the :class:`~fieldpush.node.Node` (in the app state
as ``"node"``, and its :class:`~fieldpush.transport.gateway.Gateway` as
``"gateway"``). :func:`build_server` configures uvicorn with
:class:`~fieldpush.transport.router.ConnectionRouter` as its first protocol
(a phone's upgrade goes straight to the gateway, everything else to uvicorn's
HTTP protocol) and :class:`~fieldpush.transport.gateway.Connection` as its
WebSocket protocol, so ``/v1/ws`` bypasses ASGI (see
:mod:`fieldpush.transport.gateway`), and with the TLS context of
:mod:`fieldpush.transport.tls` when a certificate is configured: then the one
port serves ``https://`` and ``wss://``.
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
from fieldpush.http.metrics_listener import MetricsListener
from fieldpush.http.requests import RequestIds, with_cors
from fieldpush.http.routes import PublishEndpoint, exception_handlers, routes
from fieldpush.node import Node, make_backend
from fieldpush.settings import Settings
from fieldpush.transport.gateway import WS_PATH, Connection
from fieldpush.transport.router import ConnectionRouter
from fieldpush.transport.tls import server_context

__all__ = ["FieldpushServer", "build_server", "create_app"]

log = logging.getLogger("fieldpush")


def create_app(settings: Settings, backend: Backend | None = None) -> ASGIApp:
    """The app; the node (and the backend, unless given) is created at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        node = Node(settings, backend if backend is not None else make_backend(settings))
        await node.start()
        listener = MetricsListener(node.metrics, settings)
        try:
            if settings.metrics_port is not None:
                await listener.start()
            # The HTTP routes read the node; the WebSocket connections only the gateway.
            yield {"node": node, "gateway": node.gateway, "metrics_listener": listener}
        finally:
            await listener.close()
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

    return RequestIds(with_cors(app, settings))


def _http_protocol() -> type[asyncio.Protocol]:
    """The HTTP protocol behind the router: uvicorn's httptools protocol with the
    head limits of :mod:`fieldpush.transport.listener` when httptools is
    installed (it is a dependency on CPython), else uvicorn's h11 protocol
    (e.g. PyPy: only ``h11_max_incomplete_event_size`` guards the head)."""
    if importlib.util.find_spec("httptools"):
        from fieldpush.transport.listener import GuardedHttpProtocol  # imports httptools

        return GuardedHttpProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


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
            scheme = "https" if self.config.ssl is not None else "http"
            self.url = f"{scheme}://{shown}:{port}"
            if self._on_listening is not None:
                self._on_listening(self.url)


def build_server(
    settings: Settings,
    *,
    backend: Backend | None = None,
    on_listening: Callable[[str], None] | None = None,
    sockets: Sequence[socket.socket] = (),
) -> FieldpushServer:
    """A uvicorn server for ``settings`` (``await server.serve()`` runs it).
    Raises :class:`~fieldpush.errors.ConfigError` for an unusable certificate
    or key, before anything listens."""
    del sockets  # reserved for socket activation
    context = server_context(settings)
    config = uvicorn.Config(
        create_app(settings, backend),
        host=settings.host,
        port=settings.port,
        ws=Connection,
        http=ConnectionRouter.serving(_http_protocol()),
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
        ssl_context_factory=None if context is None else (lambda _config, _default: context),
    )
    return FieldpushServer(config, on_listening)


def describe(url: str, settings: Settings, backend_name: str) -> str:
    ws_url = "ws" + url.removeprefix("http") + WS_PATH  # http -> ws, https -> wss
    return (
        f"fieldpush listening on {url} (WebSocket {ws_url}), "
        f"node {settings.node_id}, backend {backend_name}"
    )
