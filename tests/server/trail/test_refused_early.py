"""Refusals that come before the work is looked at are in the audit trail too
(issue 12, item 4), on each backend: a token refused at the WebSocket
upgrade's ``Authorization`` header, a publish by a role that may not publish
(refused before its body is read), and a batch of mutations refused whole
(too many, malformed) on the socket and over HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.conftest import NodeFactory
from tests.support.node import RunningNode
from tests.support.phones import Phone, phone
from tests.support.timing import eventually


async def entries(node: RunningNode, action: str) -> list[dict[str, Any]]:
    await node.node.audit.flushed()
    stored = await node.node.backend.audit.read(1, 1000)
    return [e.as_dict() for e in stored if e.action == action]


def mutation(n: int) -> dict[str, Any]:
    return {
        "mid": f"m{n}",
        "type": "customer",
        "rid": f"c{n}",
        "fields": {"name": "X"},
        "hlc": [time.time_ns() // 1_000_000, 0],
    }


async def test_a_token_refused_at_the_upgrade_header_is_a_login_refusal(
    start_node: NodeFactory,
) -> None:
    async with start_node(audit_refusals_s=0.1) as node:
        await node.node.accounts.set_active("gone", False, actor="root", role="admin")
        tokens = ["not-a-token", node.token("gone")]
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            async with connect(node.ws_url, additional_headers=headers) as ws:
                assert await Phone(ws, binary=False).closed_with() in (4001, 4003)

        async def refused() -> dict[str, int]:
            return {
                e["outcome"]: e["fields"]["count"][1] for e in await entries(node, "login.refused")
            }

        found = await eventually(
            refused,
            until=lambda got: len(got) == 2,
            message="both upgrade refusals in the trail",
        )
    assert found == {"refused:invalid_token": 1, "refused:account_disabled": 1}


async def test_a_publish_by_a_role_that_may_not_publish_is_recorded(
    start_node: NodeFactory,
) -> None:
    async with start_node() as node, httpx.AsyncClient(base_url=node.url) as http:
        headers = {"Authorization": f"Bearer {node.token('ann', 'sales')}"}
        reply = await http.post("/v1/publish", content=b"not even read", headers=headers)
        assert reply.status_code == 403
        (entry,) = await entries(node, "publish")
    assert (entry["actor"], entry["role"], entry["target"], entry["outcome"]) == (
        "ann",
        "sales",
        "event",
        "refused:forbidden",
    )


async def test_batches_refused_whole_are_recorded_on_the_socket(start_node: NodeFactory) -> None:
    async with start_node(sync_max_mutations=2) as node:
        async with phone(node, "ann", role="sales", device="p1") as ann:
            too_many = await ann.request(
                {"type": "mutate", "id": 1, "mutations": [mutation(n) for n in range(3)]}
            )
            assert too_many["code"] == "too_large"
            malformed = await ann.request({"type": "mutate", "id": 2, "mutations": "lots"})
            assert malformed["code"] == "bad_request"
        found = await entries(node, "sync.batch")
        judged = await entries(node, "sync.write")
    assert [(e["actor"], e["device"], e["outcome"], e["fields"]) for e in found] == [
        ("ann", "p1", "refused:too_large", {"mutations": [None, 3]}),
        ("ann", "p1", "refused:bad_request", {}),
    ]
    assert judged == []  # nothing of them was judged


async def test_batches_refused_whole_are_recorded_over_http(start_node: NodeFactory) -> None:
    async with (
        start_node(sync_max_mutations=2) as node,
        httpx.AsyncClient(base_url=node.url) as http,
    ):
        headers = {"Authorization": f"Bearer {node.token('crm', 'service')}"}
        body = {"mutations": [mutation(n) for n in range(3)]}
        assert (await http.post("/v1/sync/push", json=body, headers=headers)).status_code == 413
        broken = {"mutations": "lots"}
        assert (await http.post("/v1/sync/push", json=broken, headers=headers)).status_code == 422
        found = await entries(node, "sync.batch")
    assert [(e["device"], e["outcome"], e["fields"]) for e in found] == [
        ("http", "refused:too_large", {"mutations": [None, 3]}),
        ("http", "refused:bad_request", {}),
    ]
