"""A hello costs the live feed's SUBSCRIBE and one backend step, counted with
Redis MONITOR on a real redis-server (issue 10, item 11): cap check, presence,
audience, positions and pending events are one ``EVALSHA`` of ``open.lua``."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

from tests.support.node import node_settings, running_node
from tests.support.phones import phone
from tests.support.timing import scaled


class Monitor:
    """A MONITOR connection: the commands Redis runs, as their quoted words."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, redis_url: str) -> Monitor:
        address = urlsplit(redis_url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(b"MONITOR\r\n")
        assert await reader.readline() == b"+OK\r\n"
        return cls(reader, writer)

    async def until(self, marker: str) -> list[str]:
        """The command lines up to the one that carries ``marker``."""
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), scaled(5))).decode()
            if marker in line:
                return lines
            lines.append(line)

    def close(self) -> None:
        self.writer.close()


async def mark(redis_url: str) -> str:
    """Run ``ECHO <unique marker>`` on Redis and return the marker."""
    marker = f"marker-{uuid.uuid4().hex}"
    address = urlsplit(redis_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(f"ECHO {marker}\r\n".encode())
    await reader.readline()
    writer.close()
    return marker


def command(line: str) -> str:
    """``+1733 [0 127.0.0.1:5] "EVALSHA" "ab…" …`` -> ``EVALSHA``."""
    return line.split('"', 2)[1].upper()


async def test_a_hello_is_one_subscribe_and_one_backend_step(redis_url: str) -> None:
    user = "round-trip-user"
    # Another phone of the team first: the team feed is live and the script
    # is loaded, as on a node that has been up for a while.
    async with (
        running_node(node_settings(redis_url=redis_url)) as node,
        phone(node, "warm-up-user", teams=("t0",), subs={"team:t0": None}),
    ):
        monitor = await Monitor.open(redis_url)
        try:
            async with phone(node, user, teams=("t0",), subs={"team:t0": None}) as device:
                assert set(device.welcome["subs"]) == {"team:t0", f"user:{user}"}
                lines = await monitor.until(await mark(redis_url))
        finally:
            monitor.close()
    # Commands a script runs show as "[0 lua]": they are part of its one step.
    commands = [command(line) for line in lines if user in line and " lua]" not in line]
    assert commands == ["SUBSCRIBE", "EVALSHA"], lines
