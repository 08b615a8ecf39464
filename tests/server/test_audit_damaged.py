"""A trail changed in Redis behind fieldpush's back can still be read and
exported, and the verifier names the changed seq (issue 12, item 5): the
damaged line is answered in its place, whatever the filters, never a 503
that would keep the auditor from the evidence. With the real ``fieldpush
serve`` on a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import ServeProcess, run
from tests.support.redis_server import RedisServer


@pytest.fixture
def node(redis_url: str) -> Iterator[ServeProcess]:
    server = ServeProcess("--port", "0", "--redis-url", redis_url).start()
    try:
        for user in ("ann", "bob", "cyd", "dan"):
            done = run("users", "disable", user, "--url", server.url)
            assert done.returncode == 0, done.stderr
        yield server
    finally:
        assert server.stop() == 0, server.output


def audit(server: ServeProcess, **query: str) -> dict[str, object]:
    token = run("token", "--user", "root", "--role", "admin").stdout.strip().splitlines()[-1]
    reply = httpx.get(
        server.url + "/v1/audit", params=query, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


def verify(tmp_path: Path, server: ServeProcess) -> tuple[int, str]:
    exported = run("audit", "export", "--url", server.url)
    assert exported.returncode == 0, exported.stderr
    trail = tmp_path / "trail.jsonl"
    trail.write_text(exported.stdout)
    keys, checkpoints = tmp_path / "keys", tmp_path / "checkpoints"
    if not keys.exists():
        assert run("audit", "keygen", "--out", str(keys)).returncode == 0
        checkpoints.mkdir()
    checked = run(
        "audit", "verify", str(trail), "--checkpoints", str(checkpoints),
        "--public-key", str(keys / "audit-public.pem"),
    )  # fmt: skip
    assert "Traceback" not in checked.stderr
    return checked.returncode, checked.stderr


def test_a_garbage_line_is_answered_in_its_place_and_named_by_verify(
    node: ServeProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    assert verify(tmp_path, node)[0] == 0  # intact before
    assert redis_server.command("LSET", "fp:audit", "1", "not json {\n") == b"OK"
    entries = audit(node)["entries"]
    assert isinstance(entries, list)
    assert entries[1]["seq"] == 2 and entries[1]["unreadable"] == "not json {\n"
    assert [e["seq"] for e in entries[:4]] == [1, 2, 3, 4]  # the rest still answered
    filtered = audit(node, actor="nobody")["entries"]
    assert isinstance(filtered, list) and [e["seq"] for e in filtered] == [2]
    code, stderr = verify(tmp_path, node)
    assert code == 1 and "seq 2" in stderr, stderr


def test_two_entries_swapped_are_answered_and_named(
    node: ServeProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    third, fourth = (redis_server.command("LINDEX", "fp:audit", str(i)) for i in (2, 3))
    redis_server.command("LSET", "fp:audit", "2", fourth.decode())
    redis_server.command("LSET", "fp:audit", "3", third.decode())
    entries = audit(node)["entries"]
    assert isinstance(entries, list)
    assert json.loads(entries[2]["unreadable"])["seq"] == 4
    code, stderr = verify(tmp_path, node)
    assert code == 1 and "seq 3" in stderr, stderr
