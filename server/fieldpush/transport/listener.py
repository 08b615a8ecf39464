"""The HTTP listener's guard: limits on every request's head (request line and
headers), before any route or the WebSocket gateway sees it.

uvicorn's httptools protocol has no header timeout and no size or count limit:
a client could hold a connection open forever with half a request, or make the
node buffer megabytes of header. :class:`GuardedHttpProtocol` adds, per
request (an upgrade request is one too):

- ``header_timeout_s``: from the connection (or the first byte of a keep-alive
  request) to the end of the headers; slower: ``408`` and closed;
- ``max_header_bytes``: bytes received while the head is incomplete; more:
  ``431`` and closed (at most one read, 256 KiB, is buffered beyond the limit);
- ``max_header_count``: header fields; more: ``431`` and closed.

The limits come from the node's settings, found like the gateway's in the app
state (``app_state["gateway"]``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fieldpush.settings import Settings

__all__ = ["GuardedHttpProtocol"]

log = logging.getLogger("fieldpush.listener")

_TOO_LARGE: Final = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: HTTPStatus
    text: str


class _Stop(Exception):
    """Raised in a parser callback to stop parsing; httptools wraps it in a
    parser error, which uvicorn answers through :meth:`send_400_response`."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head limits of the module docstring."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], **kw: Any):
        super().__init__(config, server_state, app_state, **kw)
        settings: Settings = app_state["gateway"].settings
        self._timeout_s = settings.header_timeout_s
        self._max_bytes = settings.max_header_bytes
        self._max_count = settings.max_header_count
        self._in_head = True
        self._head_bytes = 0
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: _Refusal | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self._max_bytes:
            self._refuse(_Refusal(_TOO_LARGE, f"request head over {self._max_bytes} bytes"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a keep-alive request: its head starts now
            self._start_head()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self._max_count:
            self._refusal = _Refusal(_TOO_LARGE, f"more than {self._max_count} header fields")
            raise _Stop
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; a refusal of :meth:`on_header`
        gets its own status instead."""
        if self._refusal is not None:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    # ------------------------------------------------------------------ own

    def _start_head(self) -> None:
        self._in_head, self._head_bytes, self._head_count = True, 0, 0
        self._stop_timer()
        self._head_timer = asyncio.get_running_loop().call_later(self._timeout_s, self._timed_out)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if self._in_head:
            text = f"request head not complete in {self._timeout_s} s"
            self._refuse(_Refusal(HTTPStatus.REQUEST_TIMEOUT, text))

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer ``refusal.status`` with a plain-text body and close the connection."""
        self._stop_timer()
        self._in_head = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        status = refusal.status
        log.info("connection %s refused (%d): %s", _peer(self.client), status, refusal.text)
        body = (refusal.text + "\n").encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        transport.write(head.encode() + body)
        transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"
