"""``python -m bench.logs``: what judging a log addition costs against an ``lww`` write.

Per mutation, on one device record of the default schema, the pure work a node
does between loading the record and committing it (issue 13, item 5):
``decode_state`` of the stored blob, the schema check of the value,
:func:`~fieldpush.sync.rules.merge`, and ``encode_state`` of the new state.

- **lww**: a new ``last_service`` date;
- **log +1**: ``{"add": [one entry]}`` to a ``service_log`` of ``--sizes``
  entries (10, 100, 500; the last one removes the oldest entry to stay within
  ``max_length``), each entry about 40 characters.

The record store's round trips (the same for both) are not included: this is
the extra CPU of the rule, of which the stored log's size is the main part
(every commit decodes and encodes the whole record). Figures are the median
over ``--repeat`` runs of ``--count`` mutations, in microseconds per mutation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fieldpush.backend.base import StoredRecord
from fieldpush.sync.codec import decode_state, encode_state
from fieldpush.sync.hlc import Stamp
from fieldpush.sync.rules import Actor, Edit, RecordState, merge
from fieldpush.sync.schema import RecordType, load_schema

ROOT = Path(__file__).resolve().parents[1]
ENGINEER = Actor("eng1", "after_sales", "eng1-phone")
CRM = Actor("crm", "service", "crm")


def stored_device(device: RecordType, size: int) -> bytes:
    """A device whose service log has ``size`` entries, added by the CRM."""
    base = {"serial": "12345678", "owner": "alice", "team": "north"}
    state = RecordState({n: (v, Stamp(1, 0, "crm")) for n, v in base.items()}, version=1)
    entries = [f"2026-05-01 entry {i:05d}: filter replaced, ok" for i in range(size)]
    if entries:
        log = device.fields["service_log"].check(entries)
        state = merge(device, state, Edit({"service_log": log}, Stamp(2, 0, "crm")), CRM).state
        assert state is not None
    return encode_state(state)


def per_mutation_us(device: RecordType, blob: bytes, name: str, values: list[Any]) -> float:
    """Decode, check, merge and encode once per value; microseconds each."""
    spec = device.fields[name]
    start = time.perf_counter()
    for i, value in enumerate(values):
        state = decode_state(StoredRecord(1, blob))
        stamp = Stamp(1_000 + i, 0, ENGINEER.device)
        outcome = merge(device, state, Edit({name: spec.check(value)}, stamp), ENGINEER)
        assert outcome.state is not None, outcome
        encode_state(outcome.state)
    return (time.perf_counter() - start) / len(values) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.logs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--count", type=int, default=2000, help="mutations per run (2000)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    device = load_schema(ROOT / "config" / "schema.toml").types["device"]
    limit = device.fields["service_log"].max_length
    rows: list[tuple[str, float]] = []
    blob = stored_device(device, 10)
    dates = [f"2026-06-{1 + i % 28:02d}" for i in range(args.count)]
    rows.append(("lww (last_service)", _median(args, device, blob, "last_service", dates)))
    for size in args.sizes:
        blob = stored_device(device, size)
        full = limit is not None and size >= limit
        adds: list[Any] = [
            {"add": [f"2026-06-02 new entry {i:05d}: belt, ok"]}
            | ({"remove": ["2026-05-01 entry 00000: filter replaced, ok"]} if full else {})
            for i in range(args.count)
        ]
        rows.append((f"log +1 ({size} entries)", _median(args, device, blob, "service_log", adds)))
    print(f"{'mutation':<26} {'µs per mutation':>16}")
    for label, micros in rows:
        print(f"{label:<26} {micros:>16.1f}")
    return 0


def _median(
    args: argparse.Namespace, device: RecordType, blob: bytes, name: str, values: list[Any]
) -> float:
    return statistics.median(
        per_mutation_us(device, blob, name, values) for _ in range(args.repeat)
    )


if __name__ == "__main__":
    sys.exit(main())
