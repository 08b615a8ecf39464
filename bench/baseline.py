"""The baseline: the floor of per-delivery cost in plain Python.

The ``websockets`` library's own ``serve`` + ``broadcast`` and a
``redis.asyncio`` subscriber that forwards each Redis message unchanged to the
sockets of its team. A phone's first message (``hello``) names its team
channel in ``subs``; the server answers with a fixed ``welcome``. Run:
``python -m bench.baseline PORT REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.typing import Subprotocol

from bench.procstat import raise_open_files, run

TEAMS: dict[str, set[ServerConnection]] = {}


async def phone(ws: ServerConnection) -> None:
    hello = json.loads(await ws.recv())
    team = next(iter(hello.get("subs") or {"team:none": None}))
    members = TEAMS.setdefault(team, set())
    members.add(ws)
    await ws.send('{"type":"welcome"}')
    try:
        await ws.wait_closed()
    finally:
        members.discard(ws)


async def forward(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("team:*")
    async for message in pubsub.listen():
        if message["type"] == "pmessage":
            broadcast(TEAMS.get(message["channel"].decode(), ()), message["data"].decode())


async def main(port: int, redis_url: str) -> None:
    forwarder = asyncio.create_task(forward(redis_url))
    subprotocols = [Subprotocol("fieldpush.v1.json")]
    async with serve(phone, "127.0.0.1", port, compression=None, subprotocols=subprotocols):
        print(f"baseline listening on http://127.0.0.1:{port}", flush=True)
        await forwarder


if __name__ == "__main__":
    raise_open_files()
    run(main(int(sys.argv[1]), sys.argv[2]))
