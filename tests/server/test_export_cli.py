"""``fieldpush export TYPE`` against the real ``fieldpush serve`` (issue 12,
item 6): the file it writes hashes to what the node's audit entry says;
refusals exit 1 with the node's reason and leave no file behind."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import httpx

from tests.support.cli import ServeProcess, run

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "customers.example.jsonl"


def token(role: str, user: str = "root") -> str:
    return run("token", "--user", user, "--role", role).stdout.strip().splitlines()[-1]


def test_export_writes_the_file_the_audit_entry_describes(tmp_path: Path) -> None:
    server = ServeProcess("--port", "0").start()
    try:
        loaded = run("records", "import", str(EXAMPLE), "--url", server.url)
        assert loaded.returncode == 0, loaded.stderr
        out = tmp_path / "customers.ndjson"
        done = run("export", "customer", "--side", "crm", "--out", str(out), "--url", server.url)
        assert done.returncode == 0, done.stderr
        body = out.read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        assert f"{len(body)} bytes, sha256 {digest}" in done.stderr
        rids = [json.loads(line)["rid"] for line in body.splitlines()]
        example = [json.loads(line) for line in EXAMPLE.read_text().splitlines() if line]
        expected = [line["rid"] for line in example if line["type"] == "customer"]
        assert rids == sorted(expected)
        as_csv = run("export", "customer", "--format", "csv", "--url", server.url)
        assert as_csv.returncode == 0, as_csv.stderr
        header, *rows = list(csv.reader(io.StringIO(as_csv.stdout, newline="")))
        assert header[0] == "rid" and [row[0] for row in rows] == sorted(expected)
        trail = httpx.get(
            server.url + "/v1/audit", headers={"Authorization": f"Bearer {token('admin')}"}
        ).json()
        exports = [e for e in trail["entries"] if e["action"] == "export"]
        assert exports[0]["fields"]["sha256"][1] == digest
        assert [e["fields"]["rows"][1] for e in exports] == [len(expected)] * 2
    finally:
        assert server.stop() == 0, server.output


def test_refused_exports_exit_1_with_the_reason_and_leave_no_file(tmp_path: Path) -> None:
    server = ServeProcess("--port", "0").start()
    try:
        out = tmp_path / "x.ndjson"
        sales = token("sales", "mallory")
        refused = run(
            "export", "customer", "--out", str(out), "--token", sales, "--url", server.url
        )
        assert refused.returncode == 1
        assert "403" in refused.stderr and "may not export" in refused.stderr
        assert not out.exists()
        unknown = run("export", "nosuch", "--out", str(out), "--url", server.url)
        assert unknown.returncode == 1 and "404" in unknown.stderr and not out.exists()
        assert "Traceback" not in refused.stderr + unknown.stderr
    finally:
        assert server.stop() == 0, server.output
