"""The audit trail's guarantees (fieldpush.backend.base.AuditLog), on each
backend: one unbroken chain, atomic appends, reads by seq; on Redis, two
nodes appending at once still make one chain; in memory, the append-only file
keeps the trail across restarts and a forged line refuses the start."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fieldpush.audit.chain import AuditDraft, AuditEntry, Head, parse_entry
from fieldpush.backend.memory.audit import AuditFileError, MemoryAudit
from tests.support.backends import Sink, make_backend, start_backend


def draft(n: int, actor: str = "ann") -> AuditDraft:
    return AuditDraft(
        ts=1_700_000_000_000 + n,
        actor=actor,
        role="admin",
        action="account.disable",
        target=f"user/u{n}",
        outcome="ok",
        fields={"active": (True, False)},
    )


def verify(entries: list[AuditEntry]) -> Head:
    """The head of ``entries`` re-hashed from the genesis (fails if broken)."""
    head = Head()
    for entry in entries:
        head = parse_entry(json.loads(entry.line), head).head
    return head


async def test_an_empty_trail(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    assert await store.audit.head() == Head()
    assert await store.audit.read(1, 10) == []
    assert await store.audit.append([]) == []


async def test_appends_make_one_chain_read_back_by_seq(backend: tuple[Any, Sink]) -> None:
    store, _ = backend
    audit = store.audit
    first = await audit.append([draft(1), draft(2)])
    second = await audit.append([draft(3)])
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert second[0].prev == first[-1].hash
    assert await audit.head() == second[0].head
    stored = await audit.read(1, 100)
    assert stored == first + second
    assert verify(stored) == second[0].head
    assert await audit.read(2, 1) == [first[1]]
    assert await audit.read(4, 10) == []
    assert await audit.read(0, 0) == []


async def test_two_writers_racing_make_one_unbroken_chain(
    backend_kind: str, backend_url: str | None
) -> None:
    """Two backends (two nodes on Redis; on memory, one backend and two
    tasks) append concurrently: every entry is stored once, chained."""
    a = make_backend(backend_kind, backend_url)
    b = make_backend(backend_kind, backend_url) if backend_kind == "redis" else a
    for started in {id(a): a, id(b): b}.values():
        await start_backend(started, Sink())
    try:

        async def write(store: Any, actor: str) -> None:
            for n in range(40):
                await store.audit.append([draft(n, actor), draft(n, actor)])

        await asyncio.gather(write(a, "a"), write(b, "b"))
        stored = await a.audit.read(1, 1000)
        assert len(stored) == 160
        assert verify(stored) == await b.audit.head()
        assert sorted(e.actor for e in stored) == ["a"] * 80 + ["b"] * 80
    finally:
        for started in {id(a): a, id(b): b}.values():
            await started.close()


async def test_the_audit_file_keeps_the_trail_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = MemoryAudit(str(path))
    audit.load()
    written = await audit.append([draft(1), draft(2)])
    audit.close()
    again = MemoryAudit(str(path))
    again.load()
    assert await again.read(1, 10) == written
    more = await again.append([draft(3)])
    assert more[0].prev == written[-1].hash
    again.close()
    assert path.read_text().splitlines() == [e.line for e in written + more]


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda lines: [lines[0], lines[1].replace("user/u2", "user/zz"), lines[2]], "seq 2"),
        (lambda lines: [lines[0], lines[2]], "seq 2"),
        (lambda lines: [lines[1], lines[0], lines[2]], "seq 1"),
        (lambda lines: [lines[0], "{not json", lines[2]], "seq 2: not JSON"),
        (lambda lines: [lines[0], "[" * 100_000, lines[2]], "seq 2: not JSON"),
    ],
)
async def test_a_forged_audit_file_refuses_the_start(
    tmp_path: Path, forge: Any, message: str
) -> None:
    path = tmp_path / "audit.jsonl"
    audit = MemoryAudit(str(path))
    audit.load()
    await audit.append([draft(1), draft(2), draft(3)])
    audit.close()
    path.write_text("".join(line + "\n" for line in forge(path.read_text().splitlines())))
    with pytest.raises(AuditFileError, match=message):
        MemoryAudit(str(path)).load()


async def test_a_torn_last_line_refuses_the_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = MemoryAudit(str(path))
    audit.load()
    await audit.append([draft(1), draft(2)])
    audit.close()
    path.write_text(path.read_text()[:-10])
    with pytest.raises(AuditFileError, match="seq 2: the last line is incomplete"):
        MemoryAudit(str(path)).load()
