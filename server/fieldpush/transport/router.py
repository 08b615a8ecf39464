"""The first protocol of every accepted connection: its first read decides who serves it.

uvicorn makes one protocol object per accepted connection, of the class it is
configured with as ``http``; that class is :class:`ConnectionRouter`. A
connection whose first read starts with the request line of the WebSocket
endpoint (``GET /v1/ws`` then a space or ``?``) goes straight to a
:class:`~fieldpush.transport.gateway.Connection`, which parses the upgrade
itself: a phone's handshake skips uvicorn's HTTP parser, its request scope and
the re-serialised request it would hand over (about a fifth of a handshake's
CPU; docs/performance.md, "Handshake (issue 10)"). Everything else, a first
read too short to tell included, goes to uvicorn's HTTP protocol with the
bytes read so far, exactly as if it had been there from the start (an upgrade
that arrives that way still reaches a ``Connection``: it is uvicorn's ``ws``
protocol).

Guarantees: a connection that sends nothing is answered 408 and closed after
``header_timeout_s``, and the head limits of docs/security.md apply from the
first read on, on either path (:mod:`fieldpush.transport.listener` for HTTP,
the gateway's own for an upgrade); during shutdown a connection still waiting
for its first read is closed (it is in ``server_state.connections`` until
handed over).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Final

from fieldpush.transport.gateway import WS_PATH, Connection
from fieldpush.transport.handshake import HandshakeError, reject

__all__ = ["ConnectionRouter"]

#: The request line of an upgrade starts with this, then a space or ``?``.
_WS_REQUEST: Final = b"GET " + WS_PATH.encode()
_WS_REQUEST_NEXT: Final = (b" ", b"?")


class ConnectionRouter(asyncio.Protocol):
    """Hands a connection to the gateway or to :attr:`http_class` on its first read."""

    #: uvicorn's HTTP protocol for every connection that is not a phone's upgrade.
    http_class: ClassVar[type[asyncio.Protocol]]

    __slots__ = ("_app_state", "_config", "_loop", "_server_state", "_timer", "_transport")

    @classmethod
    def serving(cls, http_class: type[asyncio.Protocol]) -> type[ConnectionRouter]:
        """The router class to configure as uvicorn's ``http``, delegating to ``http_class``."""
        return type("ConnectionRouter", (cls,), {"http_class": http_class, "__slots__": ()})

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._server_state.connections.add(self)
        loop = asyncio.get_running_loop()
        timeout = self._app_state["gateway"].settings.header_timeout_s
        self._timer = loop.call_later(timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None  # data comes after connection_made
        self._leave()
        protocol: asyncio.Protocol
        if data.startswith(_WS_REQUEST) and data[len(_WS_REQUEST) : len(_WS_REQUEST) + 1] in (
            _WS_REQUEST_NEXT
        ):
            protocol = Connection(self._config, self._server_state, self._app_state)
        else:
            protocol = self.http_class(  # type: ignore[call-arg]
                config=self._config,
                server_state=self._server_state,
                app_state=self._app_state,
                _loop=self._loop,
            )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()

    def shutdown(self) -> None:
        """Called by uvicorn when the node drains."""
        if self._transport is not None:
            self._transport.close()

    def _idle(self) -> None:
        """Nothing came within ``header_timeout_s``: 408, as the listener answers."""
        self._timer = None
        if self._transport is not None:
            self._transport.write(reject(HandshakeError(408, "request head not complete in time")))
            self._transport.close()

    def _leave(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server_state.connections.discard(self)
