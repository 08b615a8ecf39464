"""Dispatchers: publish through fieldpush's HTTP API, or straight into Redis for the baseline.

Both are minimal hand-written clients on asyncio streams, so the load generator
spends about the same on either side: a keep-alive HTTP/1.1 ``POST /v1/publish``
for fieldpush, a RESP ``PUBLISH`` of a ready ``event`` frame of the same shape
and size as fieldpush's for the baseline (which forwards it unchanged). Each
payload carries its send stamp, ``data.t = time.time_ns()``, taken just before
the request is written.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Protocol

#: ``data`` is exactly this many bytes of compact JSON: ``{"t":<19 digits>,"pad":"x…"}``.
PAYLOAD_BYTES = 250
PAD = "x" * (PAYLOAD_BYTES - len('{"t":1763860000000000000,"pad":""}'))
COMPACT = (",", ":")


def payload_data() -> dict[str, object]:
    """The event's ``data``: the send stamp and padding up to :data:`PAYLOAD_BYTES`."""
    return {"t": time.time_ns(), "pad": PAD}


class Publisher(Protocol):
    """One dispatcher connection; ``publish`` returns once the server acknowledged."""

    async def publish(self, channel: str, priority: str = "normal") -> None: ...

    async def close(self) -> None: ...


class HttpPublisher:
    """``POST /v1/publish`` over one keep-alive HTTP/1.1 connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.head = (
            b"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: "
        )

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> HttpPublisher:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, token)

    async def publish(self, channel: str, priority: str = "normal") -> None:
        body = json.dumps(
            {"channels": [channel], "kind": "bench", "priority": priority, "data": payload_data()},
            separators=COMPACT,
        ).encode()
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reply = await self.reader.readexactly(length)
        if status.split(b" ", 2)[1:2] != [b"201"]:
            raise RuntimeError(f"publish failed: {status!r} {reply[:200]!r}")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def event_frame(channel: str, seq: int) -> bytes:
    """An ``event`` frame shaped and sized as fieldpush's (same keys, same order,
    offset and id of the same lengths), ready for the baseline to forward."""
    now_ms = time.time_ns() // 1_000_000
    frame = {
        "type": "event",
        "channel": channel,
        "offset": f"Ab3dEf7h:{now_ms}-{seq}",
        "ts": now_ms,
        "id": f"0281f44d6787{seq:08x}",
        "kind": "bench",
        "priority": "normal",
        "data": payload_data(),
    }
    return json.dumps(frame, separators=COMPACT).encode()


def resp_command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RedisPublisher:
    """``PUBLISH channel <event frame>`` over one Redis connection (RESP2)."""

    #: Per channel, as fieldpush's offsets count per channel.
    sequences: dict[str, int] = {}

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RedisPublisher:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def publish(self, channel: str, priority: str = "normal") -> None:
        """The baseline has no priorities: every event is forwarded alike."""
        seq = self.sequences[channel] = self.sequences.get(channel, 0) + 1
        name = channel.encode()
        self.writer.write(resp_command(b"PUBLISH", name, event_frame(channel, seq)))
        reply = await self.reader.readline()
        if not reply.startswith(b":"):
            raise RuntimeError(f"PUBLISH failed: {reply!r}")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
