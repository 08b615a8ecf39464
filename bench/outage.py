"""``python -m bench.outage``: from the end of a network outage to an empty offline queue.

One in-process node (memory backend) behind a TCP gate that the phone's
WebSocket and HTTP both go through. The phone (``PushClient`` with its
default reconnect and fallback settings, ``SyncClient`` with ``auto``)
connects; the gate closes every connection and refuses new ones for
``--outage`` seconds (3); the phone queues ``--edits`` edits (20) meanwhile;
the gate opens again. Reported per run: the seconds from the gate opening to
the phone's queue being empty, and which transport the phone was on then;
``--repeat`` runs (5), median and maximum. The SDK's API used is the same
before and after issue 13, so the same script measures both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fieldpush.app import build_server
from fieldpush.identity.auth import mint_token
from fieldpush.settings import Settings
from fieldpush_client import PushClient, SyncClient, SyncStore, generate_key


class Gate:
    """Forwards a free loopback port to ``target`` while open; :meth:`close`
    drops every forwarded connection and refuses new ones until :meth:`open`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.is_open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def close(self) -> None:
        self.is_open = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def open(self) -> None:
        self.is_open = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def one_run(settings: Settings, outage_s: float, edits: int, tmp: Path) -> dict[str, Any]:
    server = build_server(settings)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    host, _, port = server.url.removeprefix("http://").rpartition(":")
    gate = Gate((host, int(port)))
    listener = await gate.start()
    base = f"http://127.0.0.1:{gate.port}"
    token = mint_token(settings, user="alice", role="sales", teams=("north",), ttl_s=3600)
    store = SyncStore(tmp / f"phone-{time.monotonic_ns()}.db", key=generate_key())
    client = PushClient(base.replace("http", "ws") + "/v1/ws", token=token, device="p")
    try:
        async with client, SyncClient(client, store) as sync:
            await client.wait_connected(10)
            gate.close()
            for i in range(edits):
                sync.edit(
                    "follow_up", f"f{i}-{time.monotonic_ns()}", {"customer": "c", "note": "n"}
                )
            await asyncio.sleep(outage_s)
            gate.open()
            opened = time.monotonic()
            while store.queued():
                await asyncio.sleep(0.05)
            return {"seconds": time.monotonic() - opened, "transport": client.transport}
    finally:
        store.close()
        listener.close()
        server.should_exit = True
        await serving


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the gate is closed")
    parser.add_argument("--edits", type=int, default=20, help="edits queued during the outage")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = Settings(port=0, access_log=False, node_id="bench-outage")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            runs.append(await one_run(settings, args.outage, args.edits, Path(tmp)))
            print(json.dumps(runs[-1]), flush=True)
    seconds = [run["seconds"] for run in runs]
    print(
        f"outage end -> queue empty: median {statistics.median(seconds):.2f} s,"
        f" max {max(seconds):.2f} s over {len(runs)} runs"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
