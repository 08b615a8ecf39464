"""``fieldpush records import``: the initial load of records through a running node.

Each line is sent as a CRM mutation (``POST /v1/sync/push``) in batches of at
most ``--batch`` lines and :data:`BATCH_BYTES`; the node's answer says per line
whether it was written, changed nothing (``"unchanged": true``) or was
refused. A line that is not JSON, not a record or longer than
:data:`MAX_LINE_BYTES` is refused here, by line number, and never sent.
Refusals are listed on stderr (the first :data:`SHOWN_REFUSALS`, reasons cut
and escaped), progress too (:mod:`fieldpush.cli.progress`); the summary goes
to stdout. Exit status 0 when nothing was refused, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from fieldpush.cli.common import NodeCall, add_node
from fieldpush.cli.progress import Progress
from fieldpush.logs import escape_controls

__all__ = ["BATCH_BYTES", "MAX_LINE_BYTES", "SHOWN_REFUSALS", "add_records"]

#: A longer line is refused without being parsed.
MAX_LINE_BYTES: Final = 256 * 1024
#: Lines per request stay below this many bytes (the node's default
#: ``sync_max_body_bytes`` is 1 MiB).
BATCH_BYTES: Final = 768 * 1024
#: Refusals listed one by one; the rest are counted.
SHOWN_REFUSALS: Final = 50
#: How much of one refusal's reason is shown.
_REASON_CHARS: Final = 300


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
        "validated, and on the change feed like any CRM write. Reports how many records were "
        "written, unchanged (the node already held those values) and refused (with line "
        "numbers). Running the same file again reports them unchanged.",
    )
    add_node(load, "service")
    load.add_argument("file", type=Path, help="JSON Lines file, one record per line")
    load.add_argument("--batch", type=int, default=500, help="records per request (default 500)")
    load.add_argument(
        "--progress-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line this often (default 10)",
    )
    load.add_argument("--quiet", action="store_true", help="no progress output")
    load.set_defaults(handler=_import)


@dataclass(frozen=True, slots=True)
class _Line:
    """One non-blank line: its number, the mutation or why it is refused, the
    file position after it."""

    number: int
    item: dict[str, Any] | str
    end: int
    #: Its length in bytes.
    size: int = 0


def _lines(source: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
    """``(line number, line or None when too long, position after it)``;
    a long line is skipped in pieces, never held whole."""
    number = 0
    while True:
        line = source.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := source.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield number, None, source.tell()
            continue
        yield number, line, source.tell()


def _import_lines(source: IO[bytes], run: str) -> Iterator[_Line]:
    """Each non-blank line as a mutation, or the reason it is refused. Mutation
    ids are unique to this run (``run``), so every line is judged again."""
    for number, line, end in _lines(source):
        if line is None:
            yield _Line(number, f"line is longer than {MAX_LINE_BYTES} bytes", end)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield _Line(number, f"not JSON: {exc}", end)
            continue
        if not (
            isinstance(record, dict)
            and isinstance(record.get("type"), str)
            and isinstance(record.get("rid"), str)
            and isinstance(record.get("fields"), dict)
        ):
            yield _Line(number, 'expected {"type": ..., "rid": ..., "fields": {...}}', end)
            continue
        digest = hashlib.sha256(f"{run}:{number}:".encode() + line.strip()).hexdigest()
        mutation = {
            "mid": "import-" + digest[:40],
            "type": record["type"],
            "rid": record["rid"],
            "fields": record["fields"],
            "hlc": [0, 0],
        }
        yield _Line(number, mutation, end, len(line))


def _import(args: argparse.Namespace) -> int:
    import httpx

    if args.batch < 1:
        print("fieldpush records import: --batch must be positive", file=sys.stderr)
        return 2
    if not args.progress_every >= 0:
        print("fieldpush records import: --progress-every must be 0 or more", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"fieldpush records import: no file {args.file}", file=sys.stderr)
        return 2
    call = NodeCall(args, "records import", user="import", role="service")
    counts: Counter[str] = Counter()
    url = call.url + "/v1/sync/push"
    progress = Progress(
        sys.stderr,
        total=args.file.stat().st_size,
        every_s=args.progress_every,
        quiet=args.quiet,
    )

    def report(number: int, problem: str) -> None:
        counts["refused"] += 1
        if counts["refused"] <= SHOWN_REFUSALS:
            reason = escape_controls(problem[:_REASON_CHARS])
            if len(problem) > _REASON_CHARS:
                reason += "..."
            progress.end_line()
            print(f"{args.file}:{number}: {reason}", file=sys.stderr)

    def send(http: httpx.Client, batch: list[tuple[int, dict[str, Any] | str]]) -> bool:
        """Send the batch's mutations; report every line of it in file order."""
        mutations = [item for _, item in batch if not isinstance(item, str)]
        results: list[dict[str, Any]] = []
        if mutations:
            body = {"device": "import", "mutations": mutations}
            reply = http.post(url, json=body, headers=call.headers)
            if reply.status_code != 200:
                progress.end_line()
                call.fail(f"{reply.status_code} {escape_controls(reply.text[:_REASON_CHARS])}")
                return False
            results = reply.json()["results"]
        answers = iter(results)
        for number, item in batch:
            if isinstance(item, str):
                report(number, item)
                continue
            result = next(answers)
            if result["status"] != "applied":
                reason = result.get("message") or result.get("reason")
                report(number, f"{result['status']}: {reason}")
            elif result.get("unchanged"):
                counts["unchanged"] += 1
            else:
                counts["written"] += 1
        return True

    batch: list[tuple[int, dict[str, Any] | str]] = []
    sent, size = 0, 0
    try:
        with httpx.Client(timeout=60) as http, args.file.open("rb") as source:
            for line in _import_lines(source, os.urandom(8).hex()):
                progress.update(sum(counts.values()) + len(batch), line.end)
                if batch and (sent >= args.batch or size + line.size > BATCH_BYTES):
                    if not send(http, batch):
                        return 1
                    batch, sent, size = [], 0, 0
                batch.append((line.number, line.item))
                if not isinstance(line.item, str):
                    sent, size = sent + 1, size + line.size
            if batch and not send(http, batch):
                return 1
    except httpx.HTTPError as exc:
        progress.end_line()
        return call.fail(f"cannot reach {args.url}: {exc}")
    progress.end_line()
    hidden = counts["refused"] - SHOWN_REFUSALS
    if hidden > 0:
        print(f"{args.file}: ... and {hidden} more refused line(s)", file=sys.stderr)
    print(
        f"{counts['written']} record(s) written, {counts['unchanged']} unchanged, "
        f"{counts['refused']} refused"
    )
    return 0 if counts["refused"] == 0 else 1
