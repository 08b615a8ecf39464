"""The clock property of docs/sync.md "Clock guarantees", with hypothesis:
whatever stamps hostile devices send (far future, far past, 2**63 - 1,
the current ms with huge counters, on the honest record or others, refused
or accepted), an honest device's edit made after a CRM write (by real time)
wins, and the server's clock is never ahead of the wall clock.

The committer runs on the memory record store with a wall clock the test
moves (no sleeps, no real time). ``FIELDPUSH_FUZZ_EXAMPLES`` multiplies the
number of examples (tests/fuzz/test_fuzz.py).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldpush.backend.memory.audit import MemoryAudit
from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.settings import Settings
from fieldpush.sync.catalog import Catalog
from fieldpush.sync.commit import Committer
from fieldpush.sync.engine import load_sync_config
from fieldpush.sync.hlc import HybridClock
from fieldpush.sync.rules import Actor
from fieldpush.trail.recorder import AuditRecorder
from fieldpush_client.protocol import Mutation

EXAMPLES = 100 * max(1, int(os.environ.get("FIELDPUSH_FUZZ_EXAMPLES", "1")))
START_MS = 1_800_000_000_000
MAX = 2**63 - 1

CRM = Actor("crm", "service", "crm")
HONEST = Actor("alice", "sales", "alice-phone", frozenset({"north"}))
#: Hostile phones: alice's other devices (their edits of her record are
#: accepted) and another user's (refused: not_found).
HOSTILE = [
    Actor("alice", "sales", "a", frozenset({"north"})),
    Actor("alice", "sales", "zzzz", frozenset({"north"})),
    Actor("mallory", "sales", "m", frozenset({"north"})),
]


@dataclass(frozen=True)
class Hostile:
    device: int
    rid: str
    wall: int  # an offset from now, or an absolute stamp
    absolute: bool
    counter: int
    advance_ms: int


walls = st.one_of(
    st.integers(-(10**6), 10**6),  # around now
    st.just(0),  # now, with any counter
    st.integers(10**6, 10**12),  # far ahead
)
hostiles = st.builds(
    Hostile,
    device=st.integers(0, len(HOSTILE) - 1),
    rid=st.sampled_from(["c1", "c2", "other"]),
    wall=st.one_of(walls, st.integers(0, MAX)),
    absolute=st.booleans(),
    counter=st.one_of(st.integers(0, 10), st.just(MAX), st.integers(0, MAX)),
    advance_ms=st.integers(0, 5_000),
)


def stamp_of(hostile: Hostile, now: int) -> tuple[int, int]:
    wall = hostile.wall if hostile.absolute else now + hostile.wall
    return (min(max(wall, 0), MAX), hostile.counter)


async def scenario(
    before: list[Hostile], after: list[Hostile], later_ms: int, counter: int
) -> None:
    """Hostile mutations, the CRM's write of ``c1``, more hostile mutations,
    then, ``later_ms`` after the last of them, the honest edit of ``c1``."""
    wall = [START_MS]
    clock = HybridClock("server:n1", lambda: wall[0])
    schema, mappings = load_sync_config(Settings(node_id="n1"))
    records = MemoryBackend(history_max_events=5, history_max_age_s=60, idempotency_ttl_s=60)
    committer = Committer(
        Catalog(records.records, schema, mappings),
        clock,
        audit=AuditRecorder(MemoryAudit(), max_pending=10**9),
    )
    mids = (f"m{n}" for n in itertools.count())

    async def send(actor: Actor, rid: str, hlc: tuple[int, int], **fields: object) -> str:
        batch = await committer.commit(
            actor, [Mutation(next(mids), "customer", rid, fields, hlc)], idempotent=True
        )
        assert clock.now().wall_ms <= wall[0], "the server's clock is ahead of real time"
        return str(batch.results[0]["status"])

    async def attack(attacks: list[Hostile]) -> None:
        for hostile in attacks:
            hlc = stamp_of(hostile, wall[0])
            await send(HOSTILE[hostile.device], hostile.rid, hlc, stage="lost")
            wall[0] += hostile.advance_ms

    for rid in ("c1", "c2"):
        fields = {"name": "ACME", "owner": "alice", "team": "north", "stage": "lead"}
        assert await send(CRM, rid, (0, 0), **fields) == "applied"
    await attack(before)
    assert await send(CRM, "c1", (0, 0), stage="negotiation") == "applied"
    await attack(after)
    wall[0] += later_ms
    assert await send(HONEST, "c1", (wall[0], counter), stage="signed") == "applied"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(hostiles, max_size=12),
    after=st.lists(hostiles, max_size=4),
    later_ms=st.integers(1, 10_000),
    counter=st.integers(0, 10),
)
def test_an_honest_edit_after_a_crm_write_wins_whatever_hostile_devices_sent(
    before: list[Hostile], after: list[Hostile], later_ms: int, counter: int
) -> None:
    asyncio.run(scenario(before, after, later_ms, counter))
