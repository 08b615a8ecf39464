"""The separate metrics listener: ``GET /metrics`` alone, on ``metrics_host:metrics_port``.

With ``metrics_port`` set, ``/metrics`` is served only here (the main port
answers 404 for it), so it can stay on a private address while the API is
public. One request per connection (``Connection: close``); anything but
``GET``/``HEAD /metrics`` is 404, a head over ``max_header_bytes`` or not
complete within ``header_timeout_s`` is dropped without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fieldpush.metrics import CONTENT_TYPE, Metrics
from fieldpush.settings import Settings

__all__ = ["MetricsListener"]

log = logging.getLogger("fieldpush.metrics")


class MetricsListener:
    """See the module docstring; :meth:`start` binds, :meth:`close` stops."""

    def __init__(self, metrics: Metrics, settings: Settings) -> None:
        self._metrics = metrics
        self._settings = settings
        self._server: asyncio.Server | None = None
        #: ``http://host:port`` once started.
        self.url = ""

    async def start(self) -> str:
        """Listen; the listener's URL (its port when ``metrics_port`` is 0)."""
        settings = self._settings
        assert settings.metrics_port is not None  # only made when it is set
        self._server = await asyncio.start_server(
            self._serve, settings.metrics_host, settings.metrics_port,
            limit=settings.max_header_bytes,
        )  # fmt: skip
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("metrics on %s/metrics", self.url)
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), self._settings.header_timeout_s
            )
            writer.write(self._answer(head.split(b"\r\n", 1)[0]))
            await writer.drain()
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # a head too long, cut or too slow: dropped
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, request_line: bytes) -> bytes:
        parts = request_line.split(b" ")
        path = parts[1].partition(b"?")[0] if len(parts) == 3 else b""
        if parts[0] in (b"GET", b"HEAD") and path == b"/metrics":
            status, kind, body = b"200 OK", CONTENT_TYPE.encode(), self._metrics.render()
        else:
            status, kind, body = b"404 Not Found", b"text/plain; charset=utf-8", b"not found\n"
        head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        return head % (status, kind, len(body)) + (b"" if parts[0] == b"HEAD" else body)
