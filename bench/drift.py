"""``python -m bench.drift``: what drift digests cost (docs/sync.md, "Data drift").

Server side, one node on the Redis backend (``bench.servers.one_node``:
fieldpush pinned to core 0, redis-server on core 1, this client unpinned):
one sales user holds ``--records`` customers (10,000); the phone has pulled
them all and is caught up. Each figure is a ``POST /v1/sync/pull`` of
``customer`` from that cursor, repeated ``--repeat`` times (median and minimum,
ms), the kinds alternating in each round:

- **plain**: the caught-up pull, no digest (what every pull costs today);
- **digest, warm**: with the phone's digest, the server's digest cached (the
  log has not moved since it was computed: another phone of the same scope,
  or the same phone again);
- **plain, after a commit** and **digest, cold**: the same two right after
  the CRM wrote a record the user cannot see (the log moved, so the pull reads
  one entry and the cached digest is stale: the digest pull scans the type);
- **repair, one bucket**: a ``repair`` of one bucket (about 1/256 of the
  records held), which scans the type too (after a digest that differed:
  only then is a repair taken).

The node runs with ``sync_drift_interval_s = 0`` (every pull compared).

Phone side, no server (:class:`~fieldpush_client.sync.SyncStore`, AES-256-GCM):
storing ``--records`` pulled records in pages of 500 with the digests kept
against the same with :meth:`Tally.replaced <fieldpush_client.drift.Tally.replaced>`
as a no-op (µs per record), the first ``digest()`` of an opened store (the
scan that rebuilds the digests) and a later one.

Only ratios measured in one run mean anything: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.seeding import TEAM, load, token
from bench.servers import one_node
from fieldpush_client import SyncStore, generate_key
from fieldpush_client.drift import Tally
from fieldpush_client.protocol import Change, Changes, Digest, bucket_of, record_hash

USER = "bulk"
KINDS = ("plain", "digest, warm", "plain, after a commit", "digest, cold", "repair, one bucket")


def customers(count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "customer",
            "rid": f"d{i:05}",
            "fields": {
                "name": f"Dealer customer {i}",
                "owner": USER,
                "team": TEAM,
                "level": "B",
                "stage": "lead",
                "budget": str(10_000 + i),
                "intended_model": "T4",
                "phone": "+49 30 5555",
            },
        }
        for i in range(count)
    ]


async def server_side(args: argparse.Namespace, url: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    headers = {"Authorization": f"Bearer {token(USER, 'sales')}"}
    crm = {"Authorization": f"Bearer {token('crm', 'service')}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await load(http, url, customers(args.records))
        held: dict[str, dict[str, Any]] = {}
        body: dict[str, Any] = {"types": ["customer"], "limit": 1000}
        while True:
            page = (await http.post("/v1/sync/pull", json=body, headers=headers)).json()
            held.update({c["rid"]: c["fields"] for c in page["changes"]})
            body["cursor"] = page["cursor"]
            if not page["more"]:
                break
        hashes = {rid: record_hash(rid, fields) for rid, fields in held.items()}
        total = Digest()
        for hashed in hashes.values():
            total = total.add(hashed)
        digest = {"customer": total.to_wire()}
        bucket = bucket_of("d00000")
        repair = {
            "customer": {
                "buckets": [bucket],
                "held": {r: f"{h:016x}" for r, h in hashes.items() if bucket_of(r) == bucket},
            }
        }
        writes = iter(range(10**9))

        async def commit() -> None:
            n = next(writes)
            fields = {"name": "x", "owner": "someone-else", "team": TEAM}
            reply = await http.put(
                f"/v1/records/customer/o{n}", json={"fields": fields}, headers=crm
            )
            reply.raise_for_status()

        async def pulled(extra: dict[str, Any], check: Callable[[dict[str, Any]], bool]) -> float:
            # One pull moves the cursor past the commit; the next starts from there.
            start = time.perf_counter()
            reply = await http.post("/v1/sync/pull", json={**body, **extra}, headers=headers)
            elapsed = time.perf_counter() - start
            answer = reply.json()
            if reply.status_code != 200 or not check(answer):
                raise SystemExit(f"bench: unexpected answer {str(answer)[:300]}")
            body["cursor"] = answer["cursor"]
            return elapsed

        def agreed(answer: dict[str, Any]) -> bool:
            return answer.get("drift", {}).get("differs") == {}

        def differs(answer: dict[str, Any]) -> bool:
            return "customer" in answer.get("drift", {}).get("differs", {})

        def plain(answer: dict[str, Any]) -> bool:
            return answer["changes"] == [] and "drift" not in answer

        def repaired(answer: dict[str, Any]) -> bool:
            return answer.get("repair") is True and answer["changes"] == []

        for _ in range(args.repeat):
            await commit()
            times["plain, after a commit"].append(await pulled({}, plain))
            await commit()
            times["digest, cold"].append(await pulled({"digest": digest}, agreed))
            times["digest, warm"].append(await pulled({"digest": digest}, agreed))
            times["plain"].append(await pulled({}, plain))
            await pulled({"digest": {"customer": Digest().to_wire()}}, differs)
            times["repair, one bucket"].append(await pulled({"repair": repair}, repaired))
    return times


def phone_side(args: argparse.Namespace, directory: Path) -> dict[str, list[float]]:
    pages = [
        Changes(
            id=0,
            changes=[
                Change("customer", r["rid"], {k: v for k, v in r["fields"].items()}) for r in chunk
            ],
            cursor=f"k{n}",
            more=True,
            snapshot=n == 0,
        )
        for n, chunk in enumerate(
            customers(args.records)[i : i + 500] for i in range(0, args.records, 500)
        )
    ]
    key = generate_key()
    times: dict[str, list[float]] = {
        "pull write, digests kept": [],
        "pull write, no digests": [],
        "first digest() (rebuild)": [],
        "later digest()": [],
    }
    real = Tally.replaced
    for run in range(args.repeat):
        for kept in (run % 2 == 0, run % 2 != 0):
            path = directory / f"store-{run}-{kept}.db"
            if not kept:
                Tally.replaced = lambda *a, **k: None  # type: ignore[method-assign]
            try:
                store = SyncStore(path, key=key)
                start = time.perf_counter()
                for page in pages:
                    store.apply_changes(page)
                per_record = (time.perf_counter() - start) / args.records * 1e6
            finally:
                Tally.replaced = real  # type: ignore[method-assign]
            times["pull write, digests kept" if kept else "pull write, no digests"].append(
                per_record
            )
            store.close()
            if kept:
                store = SyncStore(path, key=key)
                start = time.perf_counter()
                store.digest()
                times["first digest() (rebuild)"].append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                store.digest()
                times["later digest()"].append((time.perf_counter() - start) * 1000)
                store.close()
    return times


def table(title: str, unit: str, times: dict[str, list[float]], scale: float) -> str:
    lines = [f"| {title} | median {unit} | min {unit} |", "|---|---|---|"]
    for kind, values in times.items():
        lines.append(
            f"| {kind} | {statistics.median(values) * scale:.2f} | {min(values) * scale:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ["FIELDPUSH_SYNC_DRIFT_INTERVAL_S"] = "0"  # compare at every pull
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        with one_node(directory) as server:
            url = f"http://{server.host}:{server.port}"
            served = asyncio.run(server_side(args, url))
        phone = phone_side(args, directory)
    print(f"{args.records} customers held by one sales user; {args.repeat} rounds")
    print(table("pull of customer, caught up", "ms", served, 1000))
    print()
    print(table("phone store", "(µs/record, ms)", phone, 1))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "server": served, "phone": phone}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
