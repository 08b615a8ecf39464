"""``python -m bench.export``: the rate of an audited export, against a full pull.

One redis-server and one fieldpush node (``--records`` customers, 20,000 by
default, written by the CRM through ``POST /v1/sync/push``). Then, per
repetition, one after the other on one keep-alive client: ``GET
/v1/export/customer`` as NDJSON and as CSV (streamed, one ``export`` audit
entry each), and the same records as a phone's full download (``POST
/v1/sync/pull`` with an admin token, page after page of
``sync_page_max``). Reported: records per second and MB per second of
each, best of ``--repeat``, and the export's rate as a ratio of the pull's
measured in the same run (the ratio is what to compare between machines:
this one is shared and noisy). Every export must carry every record, and
its audit entry's SHA-256 must be the SHA-256 of the body received.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import one_node

ROOT = Path(__file__).resolve().parent.parent
BATCH = 500


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def customer(n: int) -> dict[str, Any]:
    return {
        "mid": f"seed-{n}",
        "type": "customer",
        "rid": f"c-{n:07d}",
        "fields": {
            "name": f"Baumaschinen Nord {n} GmbH & Co. KG",
            "owner": f"u{n % 300}",
            "team": f"t{n % 12}",
            "address": f"Hafenstrasse {n % 200}, 20457 Hamburg",
            "phone": f"+49 40 {n:07d}",
            "stage": "negotiation",
            "budget": str(10_000 + n),
        },
        "hlc": [0, 0],
    }


async def seed(http: httpx.AsyncClient, crm: dict[str, str], count: int) -> None:
    for start in range(0, count, BATCH):
        batch = [customer(n) for n in range(start, min(count, start + BATCH))]
        reply = await http.post("/v1/sync/push", json={"mutations": batch}, headers=crm)
        reply.raise_for_status()
        assert all(r["status"] == "applied" for r in reply.json()["results"]), reply.text


async def export(http: httpx.AsyncClient, admin: dict[str, str], fmt: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    async with http.stream(
        "GET", "/v1/export/customer", params={"format": fmt}, headers=admin
    ) as reply:
        reply.raise_for_status()
        body = b"".join([chunk async for chunk in reply.aiter_raw()])
    return time.perf_counter() - started, body


async def last_export(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    """The newest ``export`` entry of the trail (paged through ``GET /v1/audit``)."""
    query: dict[str, Any] = {"target": "customer", "actor": "root", "limit": 1000}
    found: list[dict[str, Any]] = []
    while True:
        page = (await http.get("/v1/audit", params=query, headers=admin)).json()
        found += [e for e in page["entries"] if e["action"] == "export"]
        if page["next"] is None:
            return found[-1]
        query["after"] = page["next"]


async def pull(http: httpx.AsyncClient, admin: dict[str, str]) -> tuple[float, int, int]:
    started = time.perf_counter()
    cursor, records, size = None, 0, 0
    while True:
        reply = await http.post(
            "/v1/sync/pull", json={"cursor": cursor, "types": ["customer"]}, headers=admin
        )
        reply.raise_for_status()
        size += len(reply.content)
        page = reply.json()
        records += len(page["changes"])
        cursor = page["cursor"]
        if not page["more"]:
            return time.perf_counter() - started, records, size


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from fieldpush.identity.auth import mint_token
    from fieldpush.settings import load_settings

    settings = load_settings(environ={})
    admin = {"Authorization": f"Bearer {mint_token(settings, user='root', role='admin')}"}
    crm = {"Authorization": f"Bearer {mint_token(settings, user='crm', role='service')}"}
    best: dict[str, tuple[float, int]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        await seed(http, crm, args.records)
        for _ in range(args.repeat):
            for fmt in ("ndjson", "csv"):
                seconds, body = await export(http, admin, fmt)
                rows = body.count(b"\n") - (1 if fmt == "csv" else 0)
                assert rows == args.records, (fmt, rows)
                if seconds < best.get(fmt, (float("inf"), 0))[0]:
                    best[fmt] = (seconds, len(body))
                sent = await last_export(http, admin)
                assert sent["fields"]["sha256"][1] == hashlib.sha256(body).hexdigest()
            seconds, records, size = await pull(http, admin)
            assert records == args.records, records
            if seconds < best.get("pull", (float("inf"), 0))[0]:
                best["pull"] = (seconds, size)
    pull_rate = args.records / best["pull"][0]
    result: dict[str, Any] = {"records": args.records, "repeat": args.repeat}
    for name, (seconds, size) in best.items():
        rate = args.records / seconds
        result[name] = {
            "seconds": round(seconds, 3),
            "records_per_s": round(rate),
            "mb_per_s": round(size / seconds / 1e6, 1),
            "vs_pull": round(rate / pull_rate, 2),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]
    with (
        tempfile.TemporaryDirectory(prefix="fieldpush-export-") as directory,
        one_node(Path(directory)) as server,
    ):
        result = asyncio.run(measure(f"http://{server.host}:{server.port}", args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
