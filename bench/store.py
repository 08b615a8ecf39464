"""``python -m bench.store``: what encrypting the SDK's local store costs per record.

The SDK's :class:`~fieldpush_client.sync.SyncStore` seals every record value
and queued edit with AES-256-GCM and looks records up by keyed HMAC tags
(issue 12). This measures it against the same store, same SQL, same file
layout, with the cipher swapped for a pass-through one (no AES, no HMAC: the
identifier itself as the tag), in the same run, in alternating order:

- **edit**: ``--edits`` calls of ``store.edit()`` (one SQLite transaction each,
  ``synchronous=FULL``: one fsync each, as on the phone);
- **pull write**: ``--records`` records stored by ``apply_changes`` in pages of
  ``--page`` (one transaction per page);
- **record read**: ``store.record(type, rid)`` of every record (server copy
  plus the queued edits of that record);
- **records read**: ``store.records(type)``, per record;
- **queued read**: ``store.queued()`` of the ``--edits`` queued edits, per edit;
- **open**: opening the filled store (key derivation and key check; encrypted
  only, as the pass-through store is opened as an encrypted one first);
- **seal + open**: the cipher alone on one record's payload, per record.

Each record has ``--fields`` fields of about 24 bytes of text. Figures are the
median over ``--repeat`` runs, in microseconds per record, with the ratio
encrypted / pass-through, and the minimum (on a busy machine the least
disturbed run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cryptography

from fieldpush_client import SyncStore, generate_key
from fieldpush_client.protocol import Change, Changes
from fieldpush_client.vault import RecordCipher, aad

PHASES = ("edit", "pull write", "record read", "records read", "queued read")


class PassThroughCipher:
    """The interface of :class:`fieldpush_client.vault.RecordCipher`, doing no crypto."""

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        return b"\x01" + bytes(12) + plaintext + bytes(16)

    def open(self, blob: bytes, associated: bytes) -> bytes:
        return blob[13:-16]

    def tag(self, *parts: str) -> bytes:
        return "\0".join(parts).encode()


def open_store(path: Path, key: bytes, *, encrypted: bool) -> SyncStore:
    store = SyncStore(path, key=key)
    if not encrypted:
        store._cipher = PassThroughCipher()  # type: ignore[assignment]  # same SQL, no crypto
    return store


def fields_of(index: int, count: int) -> dict[str, Any]:
    return {f"field_{n}": f"value {index:06d} of field {n:02d}" for n in range(count)}


def per_record_us(seconds: float, count: int) -> float:
    return seconds / count * 1e6


def one_run(args: argparse.Namespace, *, encrypted: bool, folder: Path) -> dict[str, float]:
    """Every phase once on a fresh store file; microseconds per record."""
    path = folder / f"{'sealed' if encrypted else 'plain'}-{time.monotonic_ns()}.db"
    key = generate_key()
    store = open_store(path, key, encrypted=encrypted)
    rids = [f"c-{i:06d}" for i in range(args.records)]
    figures: dict[str, float] = {}

    started = time.perf_counter()
    for start in range(0, args.records, args.page):
        changes = [
            Change("customer", rid, fields_of(start + i, args.fields))
            for i, rid in enumerate(rids[start : start + args.page])
        ]
        store.apply_changes(Changes(id=1, changes=changes, cursor=f"c{start}", more=False))
    figures["pull write"] = per_record_us(time.perf_counter() - started, args.records)

    started = time.perf_counter()
    for i in range(args.edits):
        store.edit("customer", rids[i * 7 % args.records], {"stage": f"stage {i}", "budget": i})
    figures["edit"] = per_record_us(time.perf_counter() - started, args.edits)

    started = time.perf_counter()
    for rid in rids:
        if store.record("customer", rid) is None:
            raise SystemExit(f"bench.store: {rid} is missing")
    figures["record read"] = per_record_us(time.perf_counter() - started, args.records)

    started = time.perf_counter()
    if len(store.records("customer")) != args.records:
        raise SystemExit("bench.store: records() lost records")
    figures["records read"] = per_record_us(time.perf_counter() - started, args.records)

    started = time.perf_counter()
    if len(store.queued()) != args.edits:
        raise SystemExit("bench.store: queued() lost edits")
    figures["queued read"] = per_record_us(time.perf_counter() - started, args.edits)
    store.close()

    started = time.perf_counter()
    open_store(path, key, encrypted=encrypted).close()
    figures["open"] = (time.perf_counter() - started) * 1e6

    cipher: Any = RecordCipher(key) if encrypted else PassThroughCipher()
    payload = json.dumps(["customer", rids[0], fields_of(0, args.fields)]).encode()
    started = time.perf_counter()
    for rid in rids:
        associated = aad(b"record", cipher.tag("type", "customer"), cipher.tag("record", rid))
        cipher.open(cipher.seal(payload, associated), associated)
    figures["seal + open"] = per_record_us(time.perf_counter() - started, args.records)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return figures


def median_of(runs: list[dict[str, float]], phase: str) -> float:
    return statistics.median(run[phase] for run in runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store",
        description="Cost per record of the SDK's encrypted store (AES-256-GCM) against a"
        " pass-through cipher, same store, same run.",
    )
    parser.add_argument("--records", type=int, default=10_000, help="records pulled (10,000)")
    parser.add_argument("--fields", type=int, default=5, help="fields per record (5)")
    parser.add_argument("--edits", type=int, default=10_000, help="queued edits (10,000)")
    parser.add_argument("--page", type=int, default=500, help="records per pulled page (500)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each kind (5)")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures")
    args = parser.parse_args(argv)
    if args.records < 1 or args.edits < 1 or args.page < 1 or args.repeat < 1:
        parser.error("--records, --edits, --page and --repeat must be at least 1")

    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for n in range(args.repeat):
            for encrypted in (n % 2 == 0, n % 2 == 1):  # alternate which goes first
                runs[encrypted].append(one_run(args, encrypted=encrypted, folder=Path(folder)))
                print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    print(
        f"{args.records} records x {args.fields} fields, {args.edits} edits, pages of"
        f" {args.page}; median of {args.repeat}; Python {platform.python_version()},"
        f" cryptography {cryptography.__version__}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'µs per record':<14} {'pass-through':>12} {'AES-256-GCM':>12} {'ratio':>6}"
        "   (min: pass, AES, ratio)"
    )
    rows = []
    for phase in (*PHASES, "seal + open"):
        plain, sealed = median_of(runs[False], phase), median_of(runs[True], phase)
        low_plain = min(run[phase] for run in runs[False])
        low_sealed = min(run[phase] for run in runs[True])
        rows.append(
            {
                "phase": phase,
                "plain_us": plain,
                "sealed_us": sealed,
                "plain_min_us": low_plain,
                "sealed_min_us": low_sealed,
            }
        )
        print(
            f"{phase:<14} {plain:>12.1f} {sealed:>12.1f} {sealed / plain:>6.2f}"
            f"   ({low_plain:.1f}, {low_sealed:.1f}, {low_sealed / low_plain:.2f})"
        )
    opened = median_of(runs[True], "open")
    rows.append({"phase": "open", "sealed_us": opened})
    print(f"open of the filled store (AES-256-GCM): {opened:.0f} µs")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"dir": str(args.dir), "json": str(args.json)},
                    "summary": rows,
                    "runs": {"sealed": runs[True], "plain": runs[False]},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
