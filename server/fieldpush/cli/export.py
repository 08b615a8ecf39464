"""``fieldpush export TYPE``: an admin's audited export through a running node
(``GET /v1/export/{type}``, docs/compliance.md "Exports").

The records stream to ``--out`` (default: standard output) as they arrive.
At the end the command prints the size and the SHA-256 of what it received,
the values the node wrote into the export's audit entry, so an auditor can
match the file to its entry. When the node stops before the end (the
response is cut), the command exits 1 and removes the ``--out`` file, so a
partial export never lies around looking whole.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from fieldpush.cli.common import NodeCall, add_node

__all__ = ["add_export"]

#: Seconds between two progress lines on a terminal.
_PROGRESS_S = 0.5


def add_export(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export one record type from a running node (admin; audited)",
        description="Download every live record of TYPE (GET /v1/export/{type}, an admin "
        "token). The node writes one audit entry with the row count and the SHA-256 of what "
        "it sent; this command prints the SHA-256 of what it received.",
    )
    add_node(export, "admin")
    export.add_argument("type", help="record type, e.g. customer (config/schema.toml)")
    export.add_argument("--format", choices=("ndjson", "csv"), default="ndjson")
    export.add_argument(
        "--side",
        choices=("phone", "crm"),
        default="phone",
        help="whose field names and values: the phones' (default) or the CRM's",
    )
    export.add_argument(
        "--out", type=Path, metavar="FILE", help="write here (default: standard output)"
    )
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    import httpx

    call = NodeCall(args, "export", user="export", role="admin")
    path = f"/v1/export/{quote(args.type, safe='')}"
    params = {"format": args.format, "side": args.side}
    digest = hashlib.sha256()
    size = 0
    out: IO[bytes] = args.out.open("wb") if args.out else sys.stdout.buffer
    complete = False
    try:
        with httpx.stream(
            "GET", call.url + path, params=params, headers=call.headers, timeout=60
        ) as reply:
            if reply.status_code != 200:
                reply.read()
                return call.fail(f"{reply.status_code} {reply.text}")
            shown = time.monotonic()
            for chunk in reply.iter_raw():
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if sys.stderr.isatty() and time.monotonic() - shown >= _PROGRESS_S:
                    shown = time.monotonic()
                    print(f"\r{size / 1e6:.1f} MB received", end="", file=sys.stderr)
        complete = True
    except httpx.HTTPError as exc:
        kept = f"{args.out} was removed" if args.out else "the output is incomplete"
        return call.fail(f"the export did not complete ({exc}); {kept}")
    finally:
        if args.out:
            out.close()
            if not complete:
                args.out.unlink(missing_ok=True)
        else:
            out.flush()
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    print(
        f"exported {args.type}: {size} bytes, sha256 {digest.hexdigest()} "
        "(compare with the audit entry 'export')",
        file=sys.stderr,
    )
    return 0
