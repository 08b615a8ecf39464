"""Dispatchers for load: publish through fieldpush's HTTP API or straight to Redis.

For fieldpush, a minimal keep-alive HTTP/1.1 client (httpx would cost the load
generator more CPU than the server spends); for the baseline, ``PUBLISH`` of a
ready ``event`` frame of the same shape and size as fieldpush's.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Protocol

import redis.asyncio as aioredis

PAD = "x" * 200  # with the rest of the data, a payload of about 250 bytes


def payload_data() -> dict[str, object]:
    return {"t": time.time_ns(), "pad": PAD}


class Publisher(Protocol):
    async def publish(self, channel: str) -> None: ...

    async def close(self) -> None: ...


class HttpPublisher:
    """``POST /v1/publish`` over one keep-alive connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.token = token

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> HttpPublisher:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, token)

    async def publish(self, channel: str) -> None:
        body = json.dumps({"channels": [channel], "kind": "bench", "data": payload_data()}).encode()
        self.writer.write(
            b"POST /v1/publish HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        status = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reply = await self.reader.readexactly(length)
        if b" 201 " not in status:
            raise RuntimeError(f"publish failed: {status!r} {reply[:200]!r}")

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class RedisPublisher:
    """``PUBLISH`` of a finished event frame, as the baseline forwards it unchanged."""

    def __init__(self, redis_url: str) -> None:
        self.client = aioredis.from_url(redis_url)
        self.seq = 0

    async def publish(self, channel: str) -> None:
        self.seq += 1
        frame = {
            "type": "event",
            "channel": channel,
            "offset": f"Ab3dEf7h:{time.time_ns() // 1_000_000}-{self.seq}",
            "ts": time.time_ns() // 1_000_000,
            "id": f"0f1e2d3c4b5a{self.seq:08x}",
            "kind": "bench",
            "priority": "normal",
            "data": payload_data(),
        }
        await self.client.publish(channel, json.dumps(frame, separators=(",", ":")))

    async def close(self) -> None:
        await self.client.aclose()
