"""Admin actions and publishes are in the audit trail (issue 12, item 4), on each backend:
disable, enable, both revocations and wipe requests, each with the actor, the
role, the target, the fields changed and the outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fieldpush.audit.chain import Head, parse_entry
from tests.conftest import NodeFactory
from tests.support.node import RunningNode
from tests.support.phones import publish


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


def admin(node: RunningNode, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token('root', role)}"}


async def trail(node: RunningNode) -> list[dict[str, Any]]:
    """Every stored entry (after the recorder's flush), re-hashed from the genesis."""
    await node.node.audit.flushed()
    head = Head()
    entries = []
    for entry in await node.node.backend.audit.read(1, 1000):
        head = parse_entry(json.loads(entry.line), head).head
        entries.append(entry.as_dict())
    return entries


async def test_account_changes_are_audited_with_old_and_new_values(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        assert (await http.post("/v1/admin/users/ann/disable", headers=admin(node))).is_success
        assert (await http.post("/v1/admin/users/ann/enable", headers=admin(node))).is_success
        reply = await http.post(
            "/v1/admin/tokens/revoke", json={"jti": "t-1"}, headers=admin(node, "service")
        )
        assert reply.is_success
        reply = await http.post(
            "/v1/admin/tokens/revoke",
            json={"user": "bob", "issued_before": 5000},
            headers=admin(node),
        )
        assert reply.is_success
    entries = await trail(node)
    summary = [(e["actor"], e["role"], e["action"], e["target"], e["outcome"]) for e in entries]
    assert summary == [
        ("root", "admin", "account.disable", "user/ann", "ok"),
        ("root", "admin", "account.enable", "user/ann", "ok"),
        ("root", "service", "token.revoke", "token/t-1", "ok"),
        ("root", "admin", "token.revoke_issued_before", "user/bob", "ok"),
    ]
    disable, enable, revoke, before = entries
    assert disable["fields"]["active"] == [True, False]
    assert disable["fields"]["tokens_valid_after"][0] == 0
    assert enable["fields"] == {"active": [False, True]}
    assert revoke["fields"]["until"][0] is None
    assert before["fields"] == {"tokens_valid_after": [0, 5000]}
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]


async def test_a_wipe_of_an_unknown_device_is_audited_as_refused(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        reply = await http.post("/v1/admin/users/ann/devices/nope/wipe", headers=admin(node))
        assert reply.status_code == 404
    (entry,) = await trail(node)
    assert (entry["action"], entry["target"], entry["outcome"]) == (
        "device.wipe",
        "device/ann/nope",
        "refused:not_found",
    )


async def test_publishes_are_audited_refused_ones_too(node: RunningNode) -> None:
    result = await publish(node, ["team:north", "user:ann"], {"n": 1}, kind="job.assigned")
    headers = {"Authorization": f"Bearer {node.token('disp', 'dispatcher')}"}
    body = {"channels": ["dispatch"], "kind": "k", "priority": "normal", "data": {}}
    async with httpx.AsyncClient(base_url=node.url) as http:
        refused = await http.post("/v1/publish", json=body, headers=headers)
    assert refused.status_code == 403
    ok, forbidden = await trail(node)
    assert (ok["actor"], ok["role"], ok["action"], ok["target"], ok["outcome"]) == (
        "disp",
        "dispatcher",
        "publish",
        f"event/{result['id']}",
        "ok",
    )
    assert ok["fields"] == {
        "channels": [None, ["team:north", "user:ann"]],
        "kind": [None, "job.assigned"],
        "priority": [None, "normal"],
    }
    assert (forbidden["outcome"], forbidden["fields"]["channels"]) == (
        "refused:forbidden",
        [None, ["dispatch"]],
    )
