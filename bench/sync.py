"""``python -m bench.sync``: delta sync on the Redis backend, one node on one core.

Two measurements (issue 4's targets in brackets):

- **reconnect flush**: ``--phones`` phones (500) connect; then each sends its
  offline queue of ``--queue`` mutations (20) in one ``mutate``, as the SDK
  does after ``welcome``, the phones one after another so that together they
  offer ``--rate`` mutations per second (6,000; ``--rate 0``: all at the same
  instant, which measures capacity, every answer waiting for the whole storm).
  Reported: mutations applied per second over the flush (first send to last
  answer) [>= 5,000], the mutate round trip per phone, p50 and p99
  [p99 <= 50 ms], and the server's CPU seconds.
- **initial download**: one user pulls ``--records`` records (10,000) of
  ``FIELDS`` fields each from no cursor, pages of ``--page`` (1,000).
  Reported: changed fields per second [>= 50,000].

- **contention** (``--measure contention``, :mod:`bench.contention`): sales
  phones, engineers, a dispatcher and the CRM edit the same records at once;
  conflict rate, convergence (checked), mutate p99 and critical push p99.

``--measure`` picks them (default: the first two). Layout as in ``python
-m bench``: fieldpush pinned to core 0, redis-server and this load generator
on core 1. Each phone's queue: 4 edits of its customer
(``stage``, a realtime field that publishes an event, ``budget``,
``intended_model``, ``phone``) and 16 new follow-ups; every mutation must come
back ``applied`` or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench import contention
from bench.procstat import LOOPS, cpu_seconds, default_loop, raise_open_files
from bench.scenarios import percentile
from bench.seeding import load, token
from bench.servers import Redis, Server, server_command

SERVER_CORE, LOAD_CORE = 0, 1
FIELDS = {"name", "owner", "team", "level", "stage", "budget", "intended_model", "phone"}


def queue_of(index: int, queue: int, now: int) -> list[dict[str, Any]]:
    """Phone ``index``'s offline queue: edits of its customer, then new follow-ups."""
    edits: list[dict[str, Any]] = [
        {"stage": "negotiation"},
        {"budget": 1000 + index},
        {"vehicle_preference": "X9"},
        {"phone": "+49 89 1234"},
    ]
    mutations = []
    for n in range(queue):
        if n < len(edits):
            record = {"type": "customer", "rid": f"c{index}", "fields": edits[n]}
        else:
            fields = {"customer": f"c{index}", "note": f"visit {n}", "next_visit": "2026-12-01"}
            record = {"type": "follow_up", "rid": f"f{index}-{n}", "fields": fields}
        mutations.append({"mid": f"m{n}", "hlc": [now, n], **record})
    return mutations


async def open_phone(url: str, index: int) -> ClientConnection:
    ws = await connect(url, subprotocols=["fieldpush.v1.json"], compression=None, max_size=None)  # type: ignore[list-item]
    await ws.send(
        json.dumps({"type": "hello", "token": token(f"u{index}", "sales"), "device": f"p{index}"})
    )
    welcome = json.loads(await ws.recv())
    if welcome.get("type") != "welcome":
        raise SystemExit(f"bench.sync: no welcome: {welcome}")
    return ws


async def flush_one(
    ws: ClientConnection, mutations: list[dict[str, Any]], start: asyncio.Event, delay_s: float
) -> tuple[int, int]:
    """Send the queue ``delay_s`` after ``start`` is set; (round trip ns, applied)."""
    await start.wait()
    if delay_s:
        await asyncio.sleep(delay_s)
    sent = time.perf_counter_ns()
    await ws.send(json.dumps({"type": "mutate", "id": 1, "mutations": mutations}))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("type") == "mutated":
            break
        if reply.get("type") == "error":
            raise SystemExit(f"bench.sync: mutate refused: {reply}")
    rtt = time.perf_counter_ns() - sent
    applied = sum(r["status"] == "applied" for r in reply["results"])
    return rtt, applied


async def reconnect_flush(
    args: argparse.Namespace, server: Server, http_url: str
) -> dict[str, Any]:
    ws_url = http_url.replace("http://", "ws://") + "/v1/ws"
    async with httpx.AsyncClient(timeout=120) as http:
        await load(
            http,
            http_url,
            [
                {
                    "type": "customer",
                    "rid": f"c{i}",
                    "fields": {"name": f"Customer {i}", "owner": f"u{i}", "team": "t1"},
                }
                for i in range(args.phones)
            ],
        )
    phones = []
    for start in range(0, args.phones, 50):
        phones += await asyncio.gather(
            *(open_phone(ws_url, i) for i in range(start, min(start + 50, args.phones)))
        )
    now = time.time_ns() // 1_000_000
    queues = [queue_of(i, args.queue, now) for i in range(args.phones)]
    go = asyncio.Event()
    # Phone i reconnects i / (rate / queue) seconds into the storm: the phones
    # together offer ``rate`` mutations per second (0: all at the same instant).
    spacing = args.queue / args.rate if args.rate else 0.0
    tasks = [
        asyncio.create_task(flush_one(ws, q, go, i * spacing))
        for i, (ws, q) in enumerate(zip(phones, queues, strict=True))
    ]
    await asyncio.sleep(0.5)
    cpu_before = cpu_seconds(server.pid)
    began = time.perf_counter()
    go.set()
    outcomes = await asyncio.gather(*tasks)
    span = time.perf_counter() - began
    cpu = cpu_seconds(server.pid) - cpu_before
    for ws in phones:
        await ws.close()
    applied = sum(a for _, a in outcomes)
    total = args.phones * args.queue
    if applied != total:
        raise SystemExit(f"bench.sync: only {applied} of {total} mutations applied")
    rtts = sorted(rtt for rtt, _ in outcomes)
    return {
        "offered_per_s": args.rate or "all at once",
        "mutations": total,
        "flush_s": round(span, 3),
        "mutations_per_s": round(total / span),
        "mutations_per_cpu_s": round(total / cpu) if cpu else None,
        "server_cpu_s": round(cpu, 3),
        "rtt_p50_ms": round(percentile(rtts, 0.5), 2),
        "rtt_p99_ms": round(percentile(rtts, 0.99), 2),
        "rtt_max_ms": round(rtts[-1] / 1e6, 2),
    }


async def initial_download(
    args: argparse.Namespace, server: Server, http_url: str
) -> dict[str, Any]:
    records = [
        {
            "type": "customer",
            "rid": f"d{i:05}",
            "fields": {
                "name": f"Dealer customer {i}",
                "owner": "bulk",
                "team": "t1",
                "level": "B",
                "stage": "lead",
                "budget": str(10_000 + i),
                "intended_model": "T4",
                "phone": "+49 30 5555",
            },
        }
        for i in range(args.records)
    ]
    async with httpx.AsyncClient(timeout=120) as http:
        await load(http, http_url, records)
    ws = await connect(
        http_url.replace("http://", "ws://") + "/v1/ws",
        subprotocols=["fieldpush.v1.json"],
        compression=None,
        max_size=None,
    )  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "hello", "token": token("bulk", "sales"), "device": "bulk"}))
    await ws.recv()
    cursor, fields, records_seen, pages = None, 0, 0, 0
    cpu_before = cpu_seconds(server.pid)
    began = time.perf_counter()
    while True:
        request: dict[str, Any] = {
            "type": "pull",
            "id": pages,
            "limit": args.page,
            "types": ["customer"],
        }
        if cursor:
            request["cursor"] = cursor
        await ws.send(json.dumps(request))
        page = json.loads(await ws.recv())
        if page.get("type") != "changes":
            raise SystemExit(f"bench.sync: pull failed: {page}")
        pages += 1
        records_seen += len(page["changes"])
        fields += sum(len(c["fields"]) for c in page["changes"])
        cursor = page["cursor"]
        if not page["more"]:
            break
    span = time.perf_counter() - began
    cpu = cpu_seconds(server.pid) - cpu_before
    await ws.close()
    if records_seen != args.records:
        raise SystemExit(f"bench.sync: pulled {records_seen} records, expected {args.records}")
    return {
        "records": records_seen,
        "fields": fields,
        "pages": pages,
        "pull_s": round(span, 3),
        "fields_per_s": round(fields / span),
        "records_per_s": round(records_seen / span),
        "server_cpu_s": round(cpu, 3),
    }


#: ``--measure`` name -> the measurement.
MEASURES: dict[str, Callable[[argparse.Namespace, Server, str], Awaitable[dict[str, Any]]]] = {
    "reconnect_flush": reconnect_flush,
    "initial_download": initial_download,
    "contention": contention.contention,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--phones", type=int, default=500)
    parser.add_argument("--queue", type=int, default=20, help="mutations per phone (20)")
    parser.add_argument(
        "--rate",
        type=float,
        default=6000,
        help="mutations per second the reconnecting phones offer together, their flushes "
        "evenly spread (6000); 0: every phone at the same instant (the server's capacity)",
    )
    parser.add_argument(
        "--records", type=int, default=10_000, help="records of the download (10000)"
    )
    parser.add_argument("--page", type=int, default=1000, help="pull page size (1000)")
    parser.add_argument("--loop", choices=LOOPS, default=default_loop())
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--measure",
        action="append",
        choices=tuple(MEASURES),
        help="what to measure (repeatable; default: reconnect_flush and initial_download)",
    )
    contention.add_arguments(parser)
    args = parser.parse_args(argv)
    measures = args.measure or ["reconnect_flush", "initial_download"]
    if args.queue < 5:
        parser.error("--queue must be at least 5 (4 customer edits and a follow-up)")
    raise_open_files()
    import os

    from bench.servers import pin_threads

    pin_threads(os.getpid(), LOAD_CORE)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        redis = Redis(LOAD_CORE, Path(directory))
        try:
            for run in range(args.repeat):
                for name in measures:
                    measure = MEASURES[name]
                    redis.flush()
                    command = server_command(
                        "fieldpush", args.loop, SERVER_CORE, redis.url, "warning"
                    )
                    server = Server(command, Path(directory) / f"{name}-{run}.log")
                    try:
                        url = f"http://{server.host}:{server.port}"
                        result = asyncio.run(measure(args, server, url))
                    finally:
                        server.stop()
                    results.append({"run": run, "measure": name, **result})
                    print(json.dumps(results[-1]), flush=True)
        finally:
            redis.stop()
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
