"""``fieldpush records import``: the initial load of records through a running node."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fieldpush.cli.common import NodeCall, add_node

__all__ = ["add_records"]


def add_records(commands: Any) -> None:
    records = commands.add_parser(
        "records",
        help="load records into a running node",
        description="Records of delta sync (docs/sync.md).",
    )
    record_commands = records.add_subparsers(
        dest="records_command", required=True, metavar="ACTION"
    )
    load = record_commands.add_parser(
        "import",
        help="initial load from a JSON Lines file",
        description='Write every line {"type", "rid", "fields"} through a running node '
        "as the CRM (POST /v1/sync/push with a service token): mapped from the CRM's names, "
        "validated, and on the change feed like any CRM write. Running the same file again "
        "changes nothing (each line's mutation id is derived from its content).",
    )
    add_node(load, "service")
    load.add_argument("file", type=Path, help="JSON Lines file, one record per line")
    load.add_argument("--batch", type=int, default=500, help="records per request (default 500)")
    load.set_defaults(handler=_import)


def _import_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line number, mutation or error message)`` for each non-blank line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield number, f"not JSON: {exc}"
                continue
            if not (
                isinstance(record, dict)
                and isinstance(record.get("type"), str)
                and isinstance(record.get("rid"), str)
                and isinstance(record.get("fields"), dict)
            ):
                yield number, 'expected {"type": ..., "rid": ..., "fields": {...}}'
                continue
            mid = "import-" + hashlib.sha256(line.strip().encode()).hexdigest()[:40]
            yield (
                number,
                {
                    "mid": mid,
                    "type": record["type"],
                    "rid": record["rid"],
                    "fields": record["fields"],
                    "hlc": [0, 0],
                },
            )


def _import(args: argparse.Namespace) -> int:
    import httpx

    if args.batch < 1:
        print("fieldpush records import: --batch must be positive", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"fieldpush records import: no file {args.file}", file=sys.stderr)
        return 2
    call = NodeCall(args, "records import", user="import", role="service")
    counts: Counter[str] = Counter()
    url = call.url + "/v1/sync/push"

    def report(number: int, problem: str) -> None:
        counts["refused"] += 1
        print(f"{args.file}:{number}: {problem}", file=sys.stderr)

    def send(http: httpx.Client, batch: list[tuple[int, dict[str, Any]]]) -> bool:
        body = {"device": "import", "mutations": [m for _, m in batch]}
        reply = http.post(url, json=body, headers=call.headers)
        if reply.status_code != 200:
            call.fail(f"{reply.status_code} {reply.text}")
            return False
        for (number, _), result in zip(batch, reply.json()["results"], strict=True):
            if result["status"] == "applied":
                counts["applied"] += 1
            else:
                report(
                    number, f"{result['status']}: {result.get('message') or result.get('reason')}"
                )
        return True

    batch: list[tuple[int, dict[str, Any]]] = []
    try:
        with httpx.Client(timeout=60) as http:
            for number, item in _import_lines(args.file):
                if isinstance(item, str):
                    report(number, item)
                    continue
                batch.append((number, item))
                if len(batch) >= args.batch:
                    if not send(http, batch):
                        return 1
                    batch = []
            if batch and not send(http, batch):
                return 1
    except httpx.HTTPError as exc:
        return call.fail(f"cannot reach {args.url}: {exc}")
    print(f"{counts['applied']} record(s) written, {counts['refused']} refused")
    return 0 if counts["refused"] == 0 else 1
