"""A hello costs one backend step, plus a SUBSCRIBE for each channel the node
has no live feed of, counted with Redis MONITOR on a real redis-server (issue
10, item 11): cap check, presence, audience, positions and pending events are
one ``EVALSHA`` of ``open.lua``; the user's own channel needs no SUBSCRIBE
(the node's pattern subscription covers every user channel)."""

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


USER = "round-trip-user"


async def hello_commands(redis_url: str, subs: dict[str, str | None]) -> list[str]:
    """The command lines Redis runs (not those a script runs inside it, shown as
    "[0 lua]") during the hello of USER, on a node where a phone of team t0 is
    connected already: the team feed is live and the scripts are loaded, as on
    a node that has been up for a while."""
    async with (
        running_node(node_settings(redis_url=redis_url)) as node,
        phone(node, "warm-up-user", teams=("t0",), subs={"team:t0": None}),
    ):
        monitor = await Monitor.open(redis_url)
        try:
            async with phone(node, USER, teams=("t0", "t1"), subs=subs) as device:
                assert set(device.welcome["subs"]) == {*subs, f"user:{USER}"}
                lines = await monitor.until(await mark(redis_url))
        finally:
            monitor.close()
    return [line for line in lines if " lua]" not in line]


def of_user(lines: list[str]) -> list[str]:
    return [command(line) for line in lines if USER in line]


async def test_a_hello_on_live_feeds_is_one_backend_step(redis_url: str) -> None:
    """The user's own channel is under the node's pattern subscription: no
    SUBSCRIBE; cap, presence, audience, position and pending: one EVALSHA."""
    lines = await hello_commands(redis_url, {"team:t0": None})
    assert of_user(lines) == ["EVALSHA"], lines
    assert not [line for line in lines if command(line) == "SUBSCRIBE"], lines


async def test_a_channel_new_to_the_node_adds_its_subscribe(redis_url: str) -> None:
    lines = await hello_commands(redis_url, {"team:t0": None, "team:t1": None})
    assert of_user(lines) == ["EVALSHA"], lines
    subscribes = [line for line in lines if command(line) == "SUBSCRIBE"]
    assert len(subscribes) == 1 and '"fp:team:t1"' in subscribes[0], lines
