"""The audit recorder (fieldpush.trail.recorder): one append per event-loop
iteration, retries while the backend is down without losing or reordering an
entry, and a bound beyond which audited actions are refused."""

from __future__ import annotations

import asyncio
import json

import pytest

from fieldpush.audit.chain import AuditDraft, AuditEntry, Head, parse_entry
from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.errors import BackendUnavailable
from fieldpush.trail.recorder import AuditBacklogged, AuditRecorder
from tests.support.timing import eventually


class FlakyAudit(MemoryAudit):
    """A memory trail that counts appends and fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.appends: list[int] = []
        self.failures = 0

    async def append(self, drafts: list[AuditDraft]) -> list[AuditEntry]:
        if self.down:
            self.failures += 1
            raise BackendUnavailable("down")
        self.appends.append(len(drafts))
        return await super().append(drafts)


def record(recorder: AuditRecorder, n: int) -> None:
    recorder.record(actor="ann", role="admin", action="a", target=f"t/{n}", outcome="ok")


async def stored(audit: MemoryAudit) -> list[str]:
    entries = await audit.read(1, 10_000)
    head = Head()
    for entry in entries:  # one unbroken chain
        head = parse_entry(json.loads(entry.line), head).head
    return [e.target for e in entries]


async def test_entries_of_one_iteration_go_in_one_append() -> None:
    audit = FlakyAudit()
    recorder = AuditRecorder(audit, max_pending=100)
    recorder.start()
    try:
        for n in range(5):
            record(recorder, n)
        await recorder.flushed()
        record(recorder, 5)
        await recorder.flushed()
        assert audit.appends == [5, 1]
        assert await stored(audit) == [f"t/{n}" for n in range(6)]
    finally:
        await recorder.close()


async def test_an_outage_loses_nothing_and_keeps_the_order() -> None:
    audit = FlakyAudit()
    recorder = AuditRecorder(audit, max_pending=100)
    recorder.start()
    try:
        audit.down = True
        record(recorder, 0)
        await eventually(lambda: audit.failures >= 2, message="the writer retries")
        record(recorder, 1)
        assert recorder.pending == 2
        audit.down = False
        await recorder.flushed()
        assert await stored(audit) == ["t/0", "t/1"]
    finally:
        await recorder.close()


async def test_beyond_the_bound_audited_actions_are_refused() -> None:
    audit = FlakyAudit()
    audit.down = True
    recorder = AuditRecorder(audit, max_pending=3)
    recorder.start()
    try:
        for n in range(3):
            recorder.require()
            record(recorder, n)
        with pytest.raises(AuditBacklogged):
            recorder.require()
        audit.down = False
        await recorder.flushed()
        recorder.require()  # room again
        assert await stored(audit) == ["t/0", "t/1", "t/2"]
    finally:
        await recorder.close()


async def test_close_stores_what_waits() -> None:
    audit = FlakyAudit()
    recorder = AuditRecorder(audit, max_pending=10)
    recorder.start()
    record(recorder, 0)
    await recorder.close()
    assert await stored(audit) == ["t/0"]


async def test_close_logs_what_it_could_not_store(caplog: pytest.LogCaptureFixture) -> None:
    audit = FlakyAudit()
    audit.down = True
    recorder = AuditRecorder(audit, max_pending=10, close_timeout_s=0.2)
    recorder.start()
    record(recorder, 0)
    await asyncio.sleep(0)
    await recorder.close()
    assert "1 entries could not be stored before shutdown" in caplog.text
