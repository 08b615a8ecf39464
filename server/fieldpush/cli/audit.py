"""``fieldpush audit keygen | export | verify``: the audit trail's signing
key, its export through a running node (``GET /v1/audit``) and its offline
verification against signed checkpoints (docs/compliance.md, "Audit trail").

``verify`` exits 0 when the trail is intact, 1 naming the first bad ``seq``
(an edited, deleted or reordered entry, a line that is not an entry, a tail
shorter than a checkpoint, a checkpoint not signed by the key), 2 on usage
errors (a file that cannot be read, a key that is not an Ed25519 public key).
It never prints a traceback for what is in the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fieldpush.audit.chain import canonical
from fieldpush.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_public_key,
    new_key_pair,
    parse_checkpoint,
)
from fieldpush.audit.verify import MAX_LINE_BYTES, verify_trail
from fieldpush.cli.common import NodeCall, add_node
from fieldpush.errors import ConfigError

__all__ = ["add_audit"]

PRIVATE_NAME = "audit-signing.pem"
PUBLIC_NAME = "audit-public.pem"


def add_audit(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="the audit trail: make the checkpoint key, export, verify",
        description="The tamper-evident audit trail (docs/compliance.md, Audit trail).",
    )
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    keygen = actions.add_parser(
        "keygen",
        help="write a new Ed25519 key pair for signing checkpoints",
        description=f"Writes {PRIVATE_NAME} (mode 0600; set audit_signing_key to it) and "
        f"{PUBLIC_NAME} (give it to the auditors) into DIR; refuses to overwrite.",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR")
    keygen.set_defaults(handler=_keygen)
    export = actions.add_parser(
        "export",
        help="print the trail as JSON lines (one entry a line) from a running node",
        description="GET /v1/audit page by page; --from/--to (ms) select by time "
        "(verify needs the whole trail: give neither).",
    )
    add_node(export, "admin")
    export.add_argument("--from", dest="start", type=int, metavar="MS")
    export.add_argument("--to", dest="end", type=int, metavar="MS")
    export.set_defaults(handler=_export)
    verify = actions.add_parser(
        "verify",
        help="re-hash an exported trail and check it against signed checkpoints",
        description="Exit 0: intact; 1: the first bad seq is named; 2: usage error.",
    )
    verify.add_argument("trail", type=Path, help="the exported trail (JSON lines)")
    verify.add_argument("--checkpoints", type=Path, required=True, metavar="DIR")
    verify.add_argument("--public-key", type=Path, required=True, metavar="KEY")
    verify.add_argument(
        "--as-of",
        type=int,
        metavar="MS",
        help="count only checkpoints written at or before MS (the export's time, "
        "which export prints): later ones saw entries the export could not have",
    )
    verify.set_defaults(handler=_verify)


def _fail(message: str, code: int) -> int:
    print(f"fieldpush audit: {message}", file=sys.stderr)
    return code


def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    for path in (private, public):
        if path.exists():
            return _fail(f"{path} exists: not overwritten", 1)
    try:
        out.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = new_key_pair()
        descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(private_pem)
        public.write_bytes(public_pem)
    except OSError as exc:
        return _fail(f"cannot write into {out}: {exc.strerror}", 2)
    print(f"private key: {private} (set audit_signing_key to it; keep it on the node)")
    print(f"public key:  {public} (give it to whoever verifies)")
    return 0


def _line_of(entry: dict[str, Any]) -> str:
    """The exported line of an entry of ``GET /v1/audit``: its canonical JSON;
    for a stored line that is not an entry, that line as stored (line breaks
    escaped, so that it stays one line), for ``verify`` to name."""
    if "unreadable" in entry:
        return str(entry["unreadable"]).replace("\r", "\\r").replace("\n", "\\n")
    return canonical(entry).decode("ascii")


def _export(args: argparse.Namespace) -> int:
    import httpx

    call = NodeCall(args, "audit export", user="cli", role="admin")
    query: dict[str, int] = {"limit": 1000}
    if args.start is not None:
        query["from"] = args.start
    if args.end is not None:
        query["to"] = args.end
    after, count = 0, 0
    as_of = time.time_ns() // 1_000_000
    out = sys.stdout
    while True:
        try:
            reply = httpx.get(
                call.url + "/v1/audit",
                params={**query, "after": after},
                headers=call.headers,
                timeout=30,
            )
        except httpx.HTTPError as exc:
            return call.fail(f"cannot reach {call.url}: {exc}")
        if reply.status_code != 200:
            return call.fail(f"{reply.status_code} {reply.text}")
        body = reply.json()
        for entry in body["entries"]:
            out.write(_line_of(entry) + "\n")
            count += 1
        if body["next"] is None:
            break
        after = body["next"]
    out.flush()
    print(f"fieldpush audit export: {count} entries, as of {as_of} (verify --as-of {as_of})",
          file=sys.stderr)  # fmt: skip
    return 0


def _lines(file: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, none read beyond MAX_LINE_BYTES + 1 bytes."""
    while line := file.readline(MAX_LINE_BYTES + 1):
        yield line


def _checkpoints(directory: Path, key: Any, as_of: int | None) -> list[Checkpoint] | str:
    """The checkpoints of ``directory``, or the message naming the first bad one."""
    found = []
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return f"checkpoint {path.name}: cannot read it: {exc.strerror}"
        try:
            checkpoint = parse_checkpoint(raw, key)
        except CheckpointError as exc:
            try:
                size = int(json.loads(raw)["size"]) if len(raw) < 4096 else 0
            except Exception:  # it is the file's problem: name no seq but the start
                size = 0
            return f"seq {max(size, 1)}: checkpoint {path.name}: {exc}"
        if as_of is None or checkpoint.ts <= as_of:
            found.append(checkpoint)
    return found


def _verify(args: argparse.Namespace) -> int:
    try:
        key = load_public_key(args.public_key.read_bytes(), f"--public-key {args.public_key}")
    except OSError as exc:
        return _fail(f"--public-key {args.public_key}: {exc.strerror}", 2)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    if not args.checkpoints.is_dir():
        return _fail(f"--checkpoints {args.checkpoints}: not a directory", 2)
    checkpoints = _checkpoints(args.checkpoints, key, args.as_of)
    if isinstance(checkpoints, str):
        return _fail(f"NOT INTACT: {checkpoints}", 1)
    if not checkpoints:
        print("fieldpush audit: warning: no checkpoints: a truncated tail cannot be seen",
              file=sys.stderr)  # fmt: skip
    started = time.monotonic()

    def progress(count: int) -> None:
        rate = count / max(time.monotonic() - started, 1e-9)
        print(f"fieldpush audit: {count} entries verified ({rate:,.0f}/s)", file=sys.stderr)

    try:
        with args.trail.open("rb") as file:
            verdict = verify_trail(_lines(file), checkpoints, progress)
    except OSError as exc:
        return _fail(f"{args.trail}: {exc.strerror}", 2)
    if not verdict.intact:
        return _fail(f"NOT INTACT: seq {verdict.bad_seq}: {verdict.reason}", 1)
    print(
        f"intact: {verdict.head.size} entries, head {verdict.head.hash}, "
        f"{len(checkpoints)} checkpoint(s) matched"
    )
    return 0
