"""What the sync benchmarks share: tokens signed with the default secret, and
the CRM's initial load of the records a scenario works on."""

from __future__ import annotations

from typing import Any

import httpx

from fieldpush.identity.auth import mint_token
from fieldpush.settings import Settings

#: Settings whose secret signs the benchmark's tokens (the node's default).
TOKENS = Settings()
#: The team of every benchmark user.
TEAM = "t1"


def token(user: str, role: str) -> str:
    """A token of ``user`` with ``role`` in team :data:`TEAM`, valid an hour."""
    return mint_token(TOKENS, user=user, role=role, teams=(TEAM,), ttl_s=3600)


async def load(http: httpx.AsyncClient, url: str, records: list[dict[str, Any]]) -> None:
    """Write ``records`` (``{type, rid, fields}``) as the CRM, 500 per request;
    exits the benchmark if any is refused."""
    headers = {"Authorization": f"Bearer {token('crm', 'service')}"}
    for start in range(0, len(records), 500):
        mutations = [
            {"mid": f"seed-{start + i}", "hlc": [0, 0], **record}
            for i, record in enumerate(records[start : start + 500])
        ]
        reply = await http.post(
            url + "/v1/sync/push", json={"mutations": mutations, "device": "seed"}, headers=headers
        )
        reply.raise_for_status()
        bad = [r for r in reply.json()["results"] if r["status"] != "applied"]
        if bad:
            raise SystemExit(f"bench: seeding refused: {bad[:3]}")
