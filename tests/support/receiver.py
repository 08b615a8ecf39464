"""A webhook receiver on a real socket (port 0): a small asyncio HTTP/1.1
server whose answers the test scripts, for the change-feed webhook's tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from fieldpush_client.webhook import verify

#: What the receiver does with one request: answer that status (empty body),
#: or ``"hang"`` (never answer), ``"redirect"`` (307 to ``/elsewhere``),
#: ``"garbage"`` (bytes that are not HTTP), ``"huge"`` (500 with an endless body).
Behaviour = int | str

ESCAPE = "\x1b[31mEVIL\x1b[0m"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: Behaviour

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """Answers POSTs by ``script`` in order, then ``200``; while ``gate`` is
    clear, every answer is 503. ``requests`` holds every request received."""

    script: deque[Behaviour] = field(default_factory=deque)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        return [r for r in self.requests if isinstance(r.answered, int) and r.answered < 300]

    def entries(self) -> list[dict[str, Any]]:
        """Every entry delivered, once per entry ``cursor`` (the de-dup a CRM does), in order."""
        seen: set[str] = set()
        entries: list[dict[str, Any]] = []
        for request in self.accepted:
            for change in request.payload["changes"]:
                if change["cursor"] not in seen:
                    seen.add(change["cursor"])
                    entries.append(change)
        return entries

    def verify_all(self, secret: str) -> None:
        """Every request carried a valid signature of its body."""
        for request in self.requests:
            verify(request.body, request.headers.get("fieldpush-signature"), secret)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                behaviour: Behaviour = 503
                if self.gate.is_set():
                    behaviour = self.script.popleft() if self.script else 200
                self.requests.append(Received(path, headers, body, behaviour))
                if not await self._answer(writer, behaviour):
                    return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, behaviour: Behaviour) -> bool:
        """Write the answer; False when the connection is to be closed."""
        if behaviour == "hang":
            await self._closing.wait()
            return False
        if behaviour == "garbage":
            writer.write(b"\x00\xff NOT HTTP " + ESCAPE.encode() + b"\r\n\r\n")
            await writer.drain()
            return False
        if behaviour == "redirect":
            writer.write(
                b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
        elif behaviour == "huge":
            writer.write(
                b"HTTP/1.1 500 " + ESCAPE.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n"
            )
            chunk = ESCAPE.encode() * 4096
            with contextlib.suppress(ConnectionError):
                for _ in range(2000):  # ~100 MB, or until the client goes
                    writer.write(chunk)
                    await writer.drain()
            return False
        else:
            assert isinstance(behaviour, int)
            writer.write(f"HTTP/1.1 {behaviour} X\r\nContent-Length: 2\r\n\r\nok".encode())
        await writer.drain()
        return True


@contextlib.asynccontextmanager
async def receiver(
    script: Iterable[Behaviour] = (), *, open_gate: bool = True
) -> AsyncIterator[Receiver]:
    """``async with receiver([500, 500]) as r``: listening on 127.0.0.1, port 0."""
    r = Receiver(script=deque(script))
    if open_gate:
        r.gate.set()
    server = await asyncio.start_server(r._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r.url = f"http://127.0.0.1:{port}/hooks/fieldpush?token=hidden"
    try:
        yield r
    finally:
        r._closing.set()
        server.close()
        for writer in list(r._writers):
            writer.close()
        await server.wait_closed()
