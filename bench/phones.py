"""Simulated phones for load: a minimal WebSocket client per phone.

``websockets``' own client costs several times more per frame, which would
make the load generator the bottleneck; this one parses unmasked server frames
by hand, answers pings, and records for every event the delay between the
dispatcher's send stamp (``data.t``, ns) and its arrival.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any


class Phone(asyncio.Protocol):
    """One phone: upgrade, ``hello`` with its token and channel, then count events."""

    def __init__(
        self,
        token: str,
        channel: str,
        latencies: list[int],
        welcomed: asyncio.Future[None],
        stalled: bool = False,
    ) -> None:
        self.token = token
        self.channel = channel
        self.latencies = latencies
        self.welcomed = welcomed
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.events = 0
        #: A stalled phone stops reading its socket after ``welcome``.
        self.stalled = stalled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: fieldpush.v1.json\r\n\r\n"
        )

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        payload = json.dumps(message).encode()
        length = len(payload)
        if length < 126:
            header = bytes((0x81, 0x80 | length))
        else:
            header = bytes((0x81, 0x80 | 126)) + length.to_bytes(2, "big")
        self.transport.write(header + b"\0\0\0\0" + payload)  # a zero mask leaves the payload as is

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.welcomed.set_exception(
                    RuntimeError(self.buffer[:200].decode(errors="replace"))
                )
                return
            self.buffer = self.buffer[end + 4 :]
            self.upgraded = True
            self.send(
                {
                    "type": "hello",
                    "token": self.token,
                    "device": "bench",
                    "subs": {self.channel: None},
                }
            )
        buffer = self.buffer
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            opcode = buffer[0] & 0x0F
            payload = buffer[start : start + length]
            buffer = buffer[start + length :]
            if opcode == 0x9:  # ping: answer with an empty masked pong
                assert self.transport is not None
                self.transport.write(b"\x8a\x80\0\0\0\0")
            elif opcode == 0x1:
                self._message(payload)
        self.buffer = buffer

    def _message(self, payload: bytes) -> None:
        now = time.time_ns()
        if payload.startswith(b'{"type":"event"'):
            self.events += 1
            self.latencies.append(now - json.loads(payload)["data"]["t"])
        elif payload.startswith(b'{"type":"events"'):
            items = json.loads(payload)["events"]
            self.events += len(items)
            self.latencies.extend(now - item["data"]["t"] for item in items)
        elif payload.startswith(b'{"type":"welcome"') and not self.welcomed.done():
            self.welcomed.set_result(None)
            if self.stalled and self.transport is not None:
                self.transport.pause_reading()


async def connect_phones(
    host: str,
    port: int,
    tokens: list[str],
    channels: list[str],
    latencies: list[int],
    concurrency: int = 50,
    stalled_every: int = 0,
) -> tuple[list[Phone], float]:
    """Connect one phone per token (at most ``concurrency`` handshakes in flight);
    the phones and the seconds it took until every one had its ``welcome``.
    With ``stalled_every`` n, every n-th phone stops reading after its welcome."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(concurrency)
    phones: list[Phone] = []

    async def one(index: int, token: str, channel: str) -> None:
        stalled = bool(stalled_every) and index % stalled_every == 0
        async with limit:
            welcomed: asyncio.Future[None] = loop.create_future()
            _, phone = await loop.create_connection(
                lambda: Phone(token, channel, latencies, welcomed, stalled), host, port
            )
            await asyncio.wait_for(welcomed, 30)
            phones.append(phone)

    started = time.perf_counter()
    await asyncio.gather(
        *(one(i, t, c) for i, (t, c) in enumerate(zip(tokens, channels, strict=True)))
    )
    return phones, time.perf_counter() - started


def close_phones(phones: list[Phone]) -> None:
    for phone in phones:
        if phone.transport is not None:
            phone.transport.close()
