"""Login refusals in the audit trail (fieldpush.trail.refusals): one entry per
(source, reason) per interval with the count, so a flood of bad tokens is a
few entries; the pairs beyond the bound are counted under ``other``."""

from __future__ import annotations

import httpx

from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.trail.recorder import AuditRecorder
from fieldpush.trail.refusals import MAX_SOURCES, LoginRefusals
from tests.conftest import NodeFactory
from tests.support.phones import connect_phone
from tests.support.timing import eventually


async def test_refusals_are_counted_per_source_and_reason() -> None:
    trail = MemoryAudit()
    audit = AuditRecorder(trail, max_pending=10_000)
    audit.start()
    refusals = LoginRefusals(audit, interval_s=60)
    try:
        for _ in range(500):
            refusals.note("10.0.0.1", "invalid_token")
        refusals.note("10.0.0.1", "token_revoked")
        for n in range(MAX_SOURCES + 5):
            refusals.note(f"10.1.{n // 256}.{n % 256}", "missing_token")
        refusals.flush()
        await audit.flushed()
        entries = await trail.read(1, 10_000)
        by_target = {(e.target, e.outcome): e.fields["count"][1] for e in entries}
        assert by_target[("source/10.0.0.1", "refused:invalid_token")] == 500
        assert by_target[("source/10.0.0.1", "refused:token_revoked")] == 1
        assert by_target[("source/other", "refused:missing_token")] == 7
        assert len(entries) == MAX_SOURCES + 1  # 1000 pairs, and "other"
        assert sum(by_target.values()) == 500 + 1 + MAX_SOURCES + 5
        refusals.flush()
        await audit.flushed()
        assert len(await trail.read(1, 10_000)) == len(entries)  # nothing new, nothing
    finally:
        await refusals.close()
        await audit.close()


async def test_a_flood_of_bad_tokens_is_one_entry_per_reason(start_node: NodeFactory) -> None:
    async with start_node(audit_refusals_s=0.2) as node:
        async with httpx.AsyncClient(base_url=node.url) as http:
            for _ in range(30):
                reply = await http.get("/v1/audit", headers={"Authorization": "Bearer not-a-token"})
                assert reply.status_code == 401
            assert (await http.get("/v1/audit")).status_code == 401
        async with connect_phone(node.ws_url, None, hello=False) as phone:
            await phone.send({"type": "hello", "token": "also-not-a-token", "device": "p"})
            assert await phone.closed_with() == 4001

        async def refusals() -> dict[str, int]:
            await node.node.audit.flushed()
            entries = await node.node.backend.audit.read(1, 1000)
            counts: dict[str, int] = {}
            for e in entries:
                if e.action == "login.refused":
                    assert e.target == "source/127.0.0.1"
                    counts[e.outcome] = counts.get(e.outcome, 0) + int(e.fields["count"][1])
            return counts

        counts = await eventually(
            refusals,
            until=lambda c: (
                c.get("refused:invalid_token", 0) >= 31 and "refused:missing_token" in c
            ),
            message="the refusals are in the trail",
        )
        assert counts == {"refused:invalid_token": 31, "refused:missing_token": 1}
