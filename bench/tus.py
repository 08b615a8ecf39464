"""A minimal tus 1.0.0 client on one raw HTTP/1.1 connection, for the upload benchmarks.

It exists so that the benchmark knows *exactly* how many body bytes left the
phone (a library client buffers and retries out of sight) and can cut its own
connection in the middle of a PATCH body, as a signal drop does.

- :class:`TusConnection` sends one request at a time on a keep-alive
  connection (reopened when needed) and counts every PATCH body byte it handed
  to the kernel (``body_bytes``); the write buffer limit is 0, so a drained
  write is in the kernel, and a cut (``abort``, an RST) loses nothing that was
  counted as unsent.
- :func:`upload` creates an upload (``POST /v1/files/``), sends it in chunks
  with ``Upload-Checksum: sha256``, and, when told to cut at byte *n*, sends
  the chunk holding *n* only up to *n*, aborts the connection, asks ``HEAD``
  for the server's ``Upload-Offset`` on a new one and goes on from there. The
  first PATCH after a cut carries ``Expect: 100-continue``: while the server
  still winds down the cut request it answers 423 before the body is sent,
  and the client asks again (counted in ``locked``), so a busy answer costs no
  body bytes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

TUS = "1.0.0"
#: The first bytes of a JPEG file (SOI, APP0 "JFIF"): what a phone's photo starts with.
JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
#: Tries of the first PATCH after a cut while the server answers 423 (busy with the cut).
LOCKED_TRIES = 200


def checksum(chunk: bytes) -> str:
    """The ``Upload-Checksum`` value of ``chunk``."""
    return "sha256 " + base64.b64encode(hashlib.sha256(chunk).digest()).decode()


def metadata(name: str, content_type: str) -> str:
    """``Upload-Metadata`` with ``filename`` and ``filetype``."""
    pairs = {"filename": name, "filetype": content_type}
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class TusError(RuntimeError):
    """The server answered what the benchmark did not expect: the run fails."""


class TusConnection:
    """One phone's HTTP/1.1 connection to a node, one request at a time."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\nTus-Resumable: {TUS}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: PATCH body bytes written into the kernel, over every connection.
        self.body_bytes = 0

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.transport.set_write_buffer_limits(0)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def cut(self) -> None:
        """Drop the connection at once (RST), as a lost signal does."""
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    def _head(self, method: str, path: str, headers: dict[str, str], length: int) -> bytes:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}{lines}"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()

    async def _reply(self, reader: asyncio.StreamReader, method: str) -> Reply:
        status_line = await reader.readline()
        if not status_line:
            raise TusError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        no_body = method == "HEAD" or status < 200 or status in (204, 304)
        body = b"" if no_body else await reader.readexactly(length)
        return Reply(status, headers, body)

    async def request(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        """A request without a body."""
        reader, writer = await self._open()
        writer.write(self._head(method, path, headers, 0))
        await writer.drain()
        return await self._reply(reader, method)

    async def patch(
        self,
        path: str,
        offset: int,
        body: bytes,
        *,
        send: int | None = None,
        expect_continue: bool = False,
    ) -> Reply | None:
        """PATCH ``body`` at ``offset``. With ``send`` n, only its first n bytes
        go out and the connection is cut: None. With ``expect_continue`` the
        body waits for the server's 100; a final answer instead means the body
        was never sent (the connection is then dropped, its state unknown)."""
        headers = {
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            "Upload-Checksum": checksum(body),
        }
        if expect_continue:
            headers["Expect"] = "100-continue"
        reader, writer = await self._open()
        writer.write(self._head("PATCH", path, headers, len(body)))
        if expect_continue:
            await writer.drain()
            interim = await self._reply(reader, "PATCH")
            if interim.status != 100:
                self.close()
                return interim
        part = body if send is None else body[:send]
        writer.write(part)
        await writer.drain()
        self.body_bytes += len(part)
        if send is not None:
            self.cut()
            return None
        return await self._reply(reader, "PATCH")


@dataclass
class Upload:
    """What one upload cost: body bytes sent, cuts, 423 answers after a cut,
    and the server's ``Upload-Offset`` after each cut."""

    size: int
    sent: int = 0
    cuts: int = 0
    locked: int = 0
    resumed_from: list[int] = field(default_factory=list)


async def upload(
    connection: TusConnection,
    data: bytes,
    chunk: int,
    *,
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
    cut_at: int | None = None,
) -> Upload:
    """Upload ``data`` in ``chunk``-byte PATCHes; with ``cut_at`` n, cut the
    connection once after n body bytes of the chunk that holds byte n and
    resume from the server's ``Upload-Offset``. Raises :class:`TusError` on
    any unexpected answer; the upload must end complete."""
    result = Upload(size=len(data))
    before = connection.body_bytes
    created = await connection.request(
        "POST",
        "/v1/files/",
        {"Upload-Length": str(len(data)), "Upload-Metadata": metadata(name, content_type)},
    )
    if created.status != 201:
        raise TusError(f"create: {created.status} {created.body[:200]!r}")
    path = created.headers["location"]
    offset, resuming = 0, False
    while offset < len(data):
        piece = data[offset : offset + chunk]
        if cut_at is not None and offset < cut_at < offset + len(piece):
            await connection.patch(path, offset, piece, send=cut_at - offset)
            result.cuts += 1
            cut_at = None
            head = await connection.request("HEAD", path, {})
            if head.status != 200:
                raise TusError(f"HEAD after a cut: {head.status}")
            offset, resuming = int(head.headers["upload-offset"]), True
            result.resumed_from.append(offset)
            continue
        reply = await connection.patch(path, offset, piece, expect_continue=resuming)
        assert reply is not None
        if reply.status == 423 and resuming and result.locked < LOCKED_TRIES:
            result.locked += 1
            await asyncio.sleep(0.005)
            continue
        if reply.status != 204:
            raise TusError(f"PATCH at {offset}: {reply.status} {reply.body[:200]!r}")
        offset, resuming = int(reply.headers["upload-offset"]), False
    result.sent = connection.body_bytes - before
    return result


def photo(size: int) -> bytes:
    """``size`` random bytes that start like a JPEG photo."""
    return JPEG_HEADER + os.urandom(size - len(JPEG_HEADER))


def check_stored(files: Path, payloads: list[bytes]) -> None:
    """Every payload is stored whole under its SHA-256 in ``files`` (a node's
    ``files_dir``); raises :class:`TusError` otherwise."""
    for data in payloads:
        digest = hashlib.sha256(data).hexdigest()
        stored = files / "sha256" / digest[:2] / digest[2:4] / digest
        if not stored.exists() or stored.stat().st_size != len(data):
            raise TusError(f"not stored whole: {digest}")
