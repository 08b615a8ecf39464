"""``GET /v1/audit`` (issue 12, item 5), on each backend: entries by target,
actor and time, paged with ``after``/``next``; admins only; every read (and
refusal) is itself audited; hostile query values are 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import NodeFactory
from tests.support.node import RunningNode


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


def bearer(node: RunningNode, role: str = "admin", user: str = "root") -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(user, role)}"}


async def audit(http: httpx.AsyncClient, node: RunningNode, **query: Any) -> dict[str, Any]:
    await node.node.audit.flushed()
    reply = await http.get("/v1/audit", params=query, headers=bearer(node))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def test_entries_by_target_actor_and_time_and_each_read_is_audited(
    node: RunningNode,
) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        for user in ("ann", "bob", "ann"):
            reply = await http.post(f"/v1/admin/users/{user}/disable", headers=bearer(node))
            assert reply.is_success
        await http.post("/v1/admin/users/bob/enable", headers=bearer(node, user="eve"))
        ann = await audit(http, node, target="user/ann")
        assert [e["seq"] for e in ann["entries"]] == [1, 3] and ann["next"] is None
        eve = await audit(http, node, actor="eve")
        assert [(e["seq"], e["action"]) for e in eve["entries"]] == [(4, "account.enable")]
        ts = ann["entries"][1]["ts"]
        window = await audit(http, node, **{"from": ts, "to": ts, "target": "user/ann"})
        assert [e["seq"] for e in window["entries"]] == [3]
        first = await audit(http, node, limit=2)
        assert [e["seq"] for e in first["entries"]] == [1, 2] and first["next"] == 2
        rest = await audit(http, node, after=first["next"], limit=2)
        assert [e["seq"] for e in rest["entries"]] == [3, 4]
        reads = await audit(http, node, actor="root", limit=1000)
        read_entries = [e for e in reads["entries"] if e["action"] == "audit.read"]
        assert len(read_entries) == 5  # the five reads before this one
        assert read_entries[0]["fields"]["query"] == [None, {"target": "user/ann", "limit": 100}]


@pytest.mark.parametrize("role", ["dispatcher", "supervisor", "service", "sales"])
async def test_only_admins_read_the_trail_and_refusals_are_audited(
    node: RunningNode, role: str
) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        reply = await http.get("/v1/audit", headers=bearer(node, role, "mallory"))
        assert reply.status_code == 403
        assert (await http.get("/v1/audit")).status_code == 401
        (entry,) = (await audit(http, node, actor="mallory"))["entries"]
    assert (entry["action"], entry["role"], entry["outcome"]) == (
        "audit.read",
        role,
        "refused:forbidden",
    )


@pytest.mark.parametrize(
    "query",
    [
        "after=-1",
        "after=1.5",
        "after=abc",
        "limit=0",
        "limit=1001",
        "from=99999999999999999999",
        "to=9007199254740992",
        "after=%EF%BC%91",  # a full-width digit
        "target=a%00b",
        "actor=a%0Ab",
        "target=" + "x" * 301,
        "bogus=1",
        "after=1&after=2",
    ],
)
async def test_hostile_query_values_are_422(node: RunningNode, query: str) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        reply = await http.get(f"/v1/audit?{query}", headers=bearer(node))
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "invalid"
