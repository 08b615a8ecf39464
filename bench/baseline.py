"""The baseline: the floor of per-delivery cost in plain Python.

The ``websockets`` library's own ``serve`` + ``broadcast`` (compression off,
as fieldpush has none) and a ``redis.asyncio`` subscriber that forwards each
Redis message unchanged, as a text frame, to the sockets of its team. A phone's
first message (``hello``) names its team channel in ``subs``; the server
answers with a fixed ``welcome``. No auth, no validation, no history.
Run: ``python -m bench.baseline PORT REDIS_URL`` (port 0 for any free one).
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.typing import Subprotocol

from bench.procstat import run

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
            team = TEAMS.get(message["channel"].decode(), ())
            broadcast(team, message["data"], text=True)


async def main(port: int, redis_url: str) -> None:
    forwarder = asyncio.create_task(forward(redis_url))
    subprotocols = [Subprotocol("fieldpush.v1.json")]
    async with serve(
        phone, "127.0.0.1", port, compression=None, subprotocols=subprotocols
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"baseline listening on http://127.0.0.1:{bound}", flush=True)
        await forwarder


if __name__ == "__main__":
    run(main(int(sys.argv[1]), sys.argv[2]))
