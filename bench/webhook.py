"""``python -m bench.webhook``: the change-feed webhook's delivery rate.

One process, one event loop: a fieldpush node (the memory backend, or Redis
with ``--redis-url``) and a local receiver that verifies each signature and
answers 200. The CRM writes ``--entries`` records through ``POST
/v1/sync/push`` (500 per call) while the receiver answers 503, so the whole
log waits; then the receiver opens and the time until it holds every entry
is the delivery time. Reported: entries per second for each
``--batch`` size, best of ``--repeat``. Node and receiver share one core,
so this is a floor for a receiver on another machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx

from fieldpush.app import build_server
from fieldpush.identity.auth import mint_token
from fieldpush.settings import Secret, Settings
from fieldpush_client.webhook import verify

SECRET = "bench-webhook-secret-0123456789abcdef"


class Receiver:
    """Answers 503 until ``open`` is set, then 200; counts verified entries."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entries = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if line
                )
                headers = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(headers["content-length"]))
                if not self.open.is_set():
                    writer.write(b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n")
                else:
                    verify(body, headers["fieldpush-signature"], SECRET)
                    self.entries += len(json.loads(body)["changes"])
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    if self.entries >= self.expected:
                        self.done.set()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def one_run(entries: int, batch: int, redis_url: str | None) -> float:
    receiver = Receiver()
    receiver.expected = entries
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        port=0,
        access_log=False,
        log_level="warning",
        node_id="bench",
        redis_url=redis_url,
        webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_secret=Secret(SECRET),
        webhook_batch_entries=batch,
        webhook_linger_s=0.05,
        webhook_backoff_min_s=0.05,
        webhook_backoff_max_s=0.1,
    )
    node_server = build_server(settings)
    task = asyncio.create_task(node_server.serve())
    while not node_server.started:
        await asyncio.sleep(0.01)
    token = mint_token(settings, user="bench", role="service", teams=(), ttl_s=3600)
    try:
        async with httpx.AsyncClient(
            base_url=node_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as http:
            for start in range(0, entries, 500):
                mutations: list[dict[str, Any]] = [
                    {
                        "mid": f"m{n}",
                        "type": "customer",
                        "rid": f"c-{n}",
                        "fields": {"name": f"Customer {n}", "owner": "alice", "team": "north"},
                        "hlc": [0, 0],
                    }
                    for n in range(start, min(entries, start + 500))
                ]
                reply = await http.post(
                    "/v1/sync/push", json={"mutations": mutations, "device": "bench"}
                )
                reply.raise_for_status()
        began = time.perf_counter()
        receiver.open.set()
        await asyncio.wait_for(receiver.done.wait(), timeout=600)
        return time.perf_counter() - began
    finally:
        node_server.should_exit = True
        await task
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)
    backend = "redis" if args.redis_url else "memory"
    print(f"webhook delivery, {args.entries} entries, {backend} backend, best of {args.repeat}")
    for batch in args.batch:
        best = min(
            asyncio.run(one_run(args.entries, batch, args.redis_url)) for _ in range(args.repeat)
        )
        print(f"  batch {batch:>4}: {args.entries / best:>9,.0f} entries/s ({best:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
