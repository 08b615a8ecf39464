"""What a SCIM write does to the fieldpush account, through the node's real
account service: ``active: false`` (PATCH, PUT) and DELETE close the user's
open sockets with 4003 and their tokens get 403 ``account_disabled``; the
role and teams from SCIM replace the token's claims. On both backends, and
across two nodes sharing a Redis (SCIM on one, the phone on the other)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fieldpush.settings import Secret
from tests.server.http.scim_support import BASE, EXTENSION, TOKEN, auth, patch_body, user_body
from tests.support.node import NodeFactory, RunningNode, node_settings, running_node
from tests.support.phones import phone
from tests.support.timing import eventually

DISABLE_FORMS: dict[str, tuple[str, Any]] = {
    "patch-entra": ("PATCH", patch_body({"op": "Replace", "value": {"active": False}})),
    "patch-rfc": ("PATCH", patch_body({"op": "replace", "path": "active", "value": False})),
    "put": ("PUT", user_body("alice", active=False)),
    # A new role in the same write: still 4003 (the disable comes first), not 1012.
    "put-new-role": ("PUT", user_body("alice", active=False, roles=[{"value": "supervisor"}])),
    "delete": ("DELETE", None),
}


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node(scim_token=Secret(TOKEN)) as running:
        yield running


async def create(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    reply = await http.post(f"{BASE}/Users", json=body, headers=auth())
    assert reply.status_code == 201, reply.text
    location: str = reply.headers["location"]
    return location


async def presence_as(node: RunningNode, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.url) as http:
        return await http.get(
            "/v1/presence/users/someone", headers={"Authorization": f"Bearer {token}"}
        )


@pytest.mark.parametrize("form", DISABLE_FORMS, ids=list(DISABLE_FORMS))
async def test_disable_by_scim_kicks_the_socket_and_refuses_the_token(
    node: RunningNode, http: httpx.AsyncClient, form: str
) -> None:
    location = await create(http, user_body("alice"))
    token = node.token("alice", "dispatcher")
    assert (await presence_as(node, token)).status_code == 200
    async with phone(node, "alice", token=token) as device:
        method, body = DISABLE_FORMS[form]
        reply = await http.request(method, location, json=body, headers=auth())
        assert reply.status_code in (200, 204), reply.text
        assert await device.closed_with() == 4003
    refused = await presence_as(node, token)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "account_disabled"
    state = await node.node.accounts.state("alice")
    assert state.active is False and state.changed_by == "scim"
    # In the audit trail as the SCIM client's doing (issue 12, item 4).
    await node.node.audit.flushed()
    done = [
        (e.actor, e.action, e.outcome, e.fields.get("active"))
        for e in await node.node.backend.audit.read(1, 100)
        if e.target == "user/alice" and e.action == "account.disable"
    ]
    assert done == [("scim", "account.disable", "ok", [True, False])]


async def test_enable_again_and_role_and_teams_from_scim(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    location = await create(http, user_body("bob", active=False))
    assert (await node.node.accounts.state("bob")).active is False
    body = {
        **user_body("bob", roles=[{"value": "dispatcher", "primary": True}]),
        "schemas": [user_body()["schemas"][0], EXTENSION],
        EXTENSION: {"teams": ["north"]},
    }
    assert (await http.put(location, json=body, headers=auth())).status_code == 200
    state = await node.node.accounts.state("bob")
    assert (state.active, state.role, state.teams) == (True, "dispatcher", ("north",))
    # A token minted as "sales" acts as the directory's dispatcher: it may read
    # presence, which sales may not. Tokens issued up to the second of the
    # disable stay refused (token_revoked): a token of a later second is needed.
    reply = await eventually(
        lambda: presence_as(node, node.token("bob", "sales")),
        until=lambda r: r.status_code == 200,
        timeout=3,
        message="a new token of bob is accepted, as a dispatcher",
    )
    assert reply.json()["user"] == "someone"
    assert (await presence_as(node, node.token("sam", "sales"))).status_code == 403


async def test_disable_on_one_node_kicks_the_socket_on_another(redis_url: str) -> None:
    settings = {"redis_url": redis_url, "scim_token": Secret(TOKEN)}
    async with (
        running_node(node_settings(node_id="node-a", **settings)) as first,
        running_node(node_settings(node_id="node-b", **settings)) as second,
        httpx.AsyncClient(base_url=first.url) as http,
    ):
        location = await create(http, user_body("carol"))
        # Any node answers SCIM: the resource is in Redis.
        async with httpx.AsyncClient(base_url=second.url) as other:
            assert (await other.get(location.replace(first.url, ""), headers=auth())).json()[
                "userName"
            ] == "carol"
        async with phone(second, "carol") as device:
            reply = await http.patch(
                location,
                json=patch_body({"op": "Replace", "value": {"active": "False"}}),
                headers=auth(),
            )
            assert reply.status_code == 200
            assert await device.closed_with() == 4003
        refused = await presence_as(second, second.token("carol", "dispatcher"))
        assert refused.json()["error"]["code"] == "account_disabled"
