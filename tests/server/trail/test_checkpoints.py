"""Signed checkpoints (issue 12, item 4) and the whole round trip (item 5),
on each backend: a node with a signing key writes a checkpoint every N
entries and at shutdown; ``fieldpush audit export`` of its trail verifies
against them with ``fieldpush audit verify``; a node without a key warns."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest

from fieldpush.audit.checkpoint import load_public_key, parse_checkpoint
from tests.conftest import NodeFactory
from tests.support.cli import run
from tests.support.timing import eventually


def keys(tmp_path: Path) -> tuple[Path, Path]:
    made = run("audit", "keygen", "--out", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    return tmp_path / "keys" / "audit-signing.pem", tmp_path / "keys" / "audit-public.pem"


async def test_checkpoints_every_n_entries_and_at_shutdown_verify_an_export(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    private, public = keys(tmp_path)
    directory = tmp_path / "checkpoints"
    settings = {
        "audit_signing_key": str(private),
        "audit_checkpoint_dir": str(directory),
        "audit_checkpoint_entries": 3,
    }
    async with start_node(**settings) as node:
        headers = {"Authorization": f"Bearer {node.token('root', 'admin')}"}
        async with httpx.AsyncClient(base_url=node.url) as http:
            for user in ("a", "b", "c", "d"):
                reply = await http.post(f"/v1/admin/users/{user}/disable", headers=headers)
                assert reply.is_success
        checkpoints = node.node.checkpoints
        assert checkpoints is not None
        first = await eventually(
            lambda: checkpoints.written, message="a checkpoint after 3 entries"
        )
        assert first[0].size >= 3
        export = await asyncio.to_thread(
            run, "audit", "export", "--url", node.url, "--token", node.token("root", "admin")
        )
        assert export.returncode == 0, export.stderr
    as_of = re.search(r"--as-of (\d+)", export.stderr)
    assert as_of is not None
    key = load_public_key(public.read_bytes(), "test")
    files = sorted(directory.glob("checkpoint-*.json"))
    sizes = [parse_checkpoint(path.read_bytes(), key).size for path in files]
    assert len(files) >= 2 and sizes == sorted(sizes)  # the last one at shutdown
    trail = tmp_path / "trail.jsonl"
    trail.write_text(export.stdout)
    exported = len(export.stdout.splitlines())
    assert exported >= 4
    args = ["audit", "verify", str(trail), "--checkpoints", str(directory)]
    verified = run(*args, "--public-key", str(public), "--as-of", as_of.group(1))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"intact: {exported} entries")
    # The shutdown checkpoint saw the export's own read: without --as-of the
    # export is shorter than the last checkpoint.
    assert max(sizes) > exported
    late = run(*args, "--public-key", str(public))
    assert late.returncode == 1 and "truncated" in late.stderr
    assert json.loads(trail.read_text().splitlines()[0])["seq"] == 1


async def test_a_node_without_a_key_warns_and_writes_no_checkpoints(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_node() as node:
        assert node.node.checkpoints is None
    assert "audit_signing_key is not set" in caplog.text
