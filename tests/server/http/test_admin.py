"""Access that ends when it should (issue 11, items 1 and 3), on each backend:
the admin API disables users and revokes tokens; their sockets close with
4003 at once, their tokens get 403 ``account_disabled`` / ``token_revoked``
over HTTP, their long-polls end; and hostile calls change nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fieldpush.backend.base import SessionOpened, SessionOpening
from tests.conftest import NodeFactory
from tests.support.node import RunningNode
from tests.support.phones import phone, pong_next
from tests.support.timing import eventually, scaled


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin(node: RunningNode, role: str = "admin") -> dict[str, str]:
    return bearer(node.token("root", role))


def old_token(node: RunningNode, user: str, role: str = "sales", age_s: int = 5) -> str:
    """A token issued ``age_s`` seconds ago (a disable refuses every token issued
    up to the second it happened: one minted just now might share it)."""
    now = int(time.time())
    claims = {
        "sub": user,
        "role": role,
        "teams": [],
        "iat": now - age_s,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, node.settings.jwt_secret.reveal(), algorithm="HS256")


def jti_of(token: str) -> str:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return str(claims["jti"])


async def presence_answer(http: httpx.AsyncClient, token: str) -> httpx.Response:
    """Any authenticated call: the token's verdict over HTTP."""
    return await http.post("/v1/poll", json={"subs": {"broadcast": None}}, headers=bearer(token))


async def test_disable_closes_every_socket_of_the_user_and_refuses_the_token(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = old_token(node, "alice")
    async with (
        phone(node, "alice", token=token) as first,
        phone(node, "alice", token=token, device="phone-2") as second,
        phone(node, "bob") as bob,
    ):
        assert (await presence_answer(http, token)).status_code == 200
        reply = await http.post("/v1/admin/users/alice/disable", headers=admin(node))
        assert reply.status_code == 200, reply.text
        state = reply.json()
        assert (state["user"], state["active"], state["changed_by"]) == (
            "alice",
            False,
            "root (admin)",
        )
        assert state["tokens_valid_after"] > 0
        assert await first.closed_with() == 4003
        assert await second.closed_with() == 4003
        assert first.ws.close_reason == "account disabled"
        await pong_next(bob)  # the others carry on
        refused = await presence_answer(http, token)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "account_disabled"
        fresh = node.token("alice")  # a new token of a disabled user: refused too
        assert (await presence_answer(http, fresh)).json()["error"]["code"] == "account_disabled"
    async with phone(node, "alice", token=token, hello=False) as again:
        await again.send({"type": "hello", "token": token, "device": "phone-1"})
        assert await again.closed_with() == 4003


async def test_a_disabled_users_token_in_the_upgrade_header_closes_4003(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = node.token("alice")
    await http.post("/v1/admin/users/alice/disable", headers=admin(node))
    async with connect(node.ws_url, additional_headers=bearer(token)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), scaled(5))
    assert ws.close_code == 4003 and ws.close_reason == "account disabled"


async def test_enable_lets_new_tokens_in_but_not_the_old_ones(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = old_token(node, "alice")
    await http.post("/v1/admin/users/alice/disable", headers=admin(node))
    reply = await http.post("/v1/admin/users/alice/enable", headers=admin(node))
    assert reply.status_code == 200 and reply.json()["active"] is True
    refused = await presence_answer(http, token)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "token_revoked")

    async def new_token_accepted() -> bool:  # from the second after the disable on
        return (await presence_answer(http, node.token("alice"))).status_code == 200

    await eventually(new_token_accepted, timeout=3, message="a token issued after the disable")


async def test_disable_ends_the_users_long_polls(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = node.token("alice")
    body = {"subs": {"user:alice": None}, "wait_s": 25}
    polling = asyncio.create_task(http.post("/v1/poll", json=body, headers=bearer(token)))
    accounts = node.node.accounts
    await eventually(lambda: "alice" in accounts._polls, message="the long-poll is waiting")
    started = time.monotonic()
    await http.post("/v1/admin/users/alice/disable", headers=admin(node))
    reply = await asyncio.wait_for(polling, scaled(5))
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "account_disabled")
    assert time.monotonic() - started < scaled(5) < 25  # ended, not timed out
    assert accounts._polls == {}


async def test_revoking_one_token_by_jti_leaves_the_others(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    revoked, kept = node.token("alice"), node.token("alice")
    async with (
        phone(node, "alice", token=revoked) as first,
        phone(node, "alice", token=kept, device="phone-2") as second,
    ):
        reply = await http.post(
            "/v1/admin/tokens/revoke", json={"jti": jti_of(revoked)}, headers=admin(node)
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["jti"] == jti_of(revoked)
        assert reply.json()["until"] > time.time() * 1000
        assert await first.closed_with() == 4003
        assert first.ws.close_reason == "token revoked"
        await pong_next(second)
    refused = await presence_answer(http, revoked)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "token_revoked")
    assert (await presence_answer(http, kept)).status_code == 200


async def test_revoking_a_users_tokens_issued_before_a_time(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = old_token(node, "alice", age_s=60)
    recent = old_token(node, "alice", age_s=5)
    async with phone(node, "alice", token=token) as device:
        cut = int(time.time() - 30) * 1000
        reply = await http.post(
            "/v1/admin/tokens/revoke",
            json={"user": "alice", "issued_before": cut},
            headers=bearer(node.token("crm", "service")),
        )
        assert reply.status_code == 200, reply.text
        assert (reply.json()["tokens_valid_after"], reply.json()["active"]) == (cut, True)
        assert await device.closed_with() == 4003
    assert (await presence_answer(http, token)).json()["error"]["code"] == "token_revoked"
    assert (await presence_answer(http, recent)).status_code == 200
    # Without issued_before: every token issued before now.
    await http.post("/v1/admin/tokens/revoke", json={"user": "alice"}, headers=admin(node))
    assert (await presence_answer(http, recent)).json()["error"]["code"] == "token_revoked"


async def test_a_refresh_with_a_revoked_token_closes_the_socket(node: RunningNode) -> None:
    current, replacement = node.token("alice"), node.token("alice")
    async with httpx.AsyncClient(base_url=node.url) as http:
        await http.post(
            "/v1/admin/tokens/revoke", json={"jti": jti_of(replacement)}, headers=admin(node)
        )
    async with phone(node, "alice", token=current) as device:
        await device.send({"type": "refresh", "id": 1, "token": replacement})
        assert await device.closed_with() == 4003


async def test_a_hello_racing_a_disable_is_closed_once_registered(node: RunningNode) -> None:
    """The disable lands after the hello's token check and before its session
    is registered: the kick finds nothing, the check after registering closes it."""
    backend = node.node.backend
    original = backend.open_session
    accounts = node.node.accounts

    async def open_then_disable(opening: SessionOpening) -> SessionOpened:
        opened = await original(opening)
        await accounts.set_active(opening.entry.user, False, actor="test")
        return opened

    backend.open_session = open_then_disable  # type: ignore[method-assign]
    try:
        async with phone(node, "alice", hello=False) as device:
            await device.send({"type": "hello", "token": node.token("alice"), "device": "p"})
            welcome = await device.recv()
            assert welcome["type"] == "welcome"
            assert await device.closed_with() == 4003
    finally:
        backend.open_session = original  # type: ignore[method-assign]
    assert node.node.registry.sessions_of("alice") == []


async def test_show_gives_the_state_and_the_devices_online(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    reply = await http.get("/v1/admin/users/carol", headers=admin(node))
    assert reply.status_code == 200
    assert reply.json() == {
        "user": "carol",
        "active": True,
        "tokens_valid_after": 0,
        "role": None,
        "teams": None,
        "changed_at": 0,
        "changed_by": "",
        "online": False,
        "last_seen": None,
        "devices": [],
    }
    async with phone(node, "carol", device="tablet"):
        shown = (await http.get("/v1/admin/users/carol", headers=admin(node))).json()
        assert shown["online"] is True
        assert [d["device"] for d in shown["devices"]] == ["tablet"]


async def test_directory_role_and_teams_replace_the_tokens_and_reopen_sessions(
    node: RunningNode,
) -> None:
    accounts = node.node.accounts
    token = node.token("dave", "sales", teams=("south",))
    async with phone(node, "dave", token=token) as device:
        assert device.welcome["role"] == "sales"
        await accounts.assign("dave", role="after_sales", teams=("north",), actor="scim")
        assert await device.closed_with() == 1012  # resume, with the new permissions
    subs: dict[str, str | None] = {"team:north": None, "team:south": None}
    async with phone(node, "dave", token=token, subs=subs) as device:
        assert device.welcome["role"] == "after_sales"
        assert "offset" in device.welcome["subs"]["team:north"]
        assert device.welcome["subs"]["team:south"] == {"error": "forbidden"}
    await accounts.assign("dave", role=None, teams=None, actor="scim")
    async with phone(node, "dave", token=token, subs=subs) as device:
        assert device.welcome["role"] == "sales"
        assert device.welcome["subs"]["team:north"] == {"error": "forbidden"}
        assert "offset" in device.welcome["subs"]["team:south"]


@pytest.mark.parametrize("role", ["sales", "after_sales", "supervisor", "dispatcher"])
async def test_only_admin_and_service_tokens_may_call_it(
    node: RunningNode, http: httpx.AsyncClient, role: str
) -> None:
    headers = bearer(node.token("someone", role))
    calls = [
        http.post("/v1/admin/users/alice/disable", headers=headers),
        http.post("/v1/admin/users/alice/enable", headers=headers),
        http.post("/v1/admin/tokens/revoke", json={"user": "alice"}, headers=headers),
        http.get("/v1/admin/users/alice", headers=headers),
    ]
    for reply in await asyncio.gather(*calls):
        assert (reply.status_code, reply.json()["error"]["code"]) == (403, "forbidden")
    assert (await http.post("/v1/admin/users/alice/disable")).status_code == 401
    assert (await node.node.backend.accounts.snapshot()).accounts == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "user"),
        ({"jti": 5}, 422, "jti"),
        ({"jti": ""}, 422, "jti"),
        ({"jti": "x" * 201}, 422, "jti"),
        ({"jti": "a", "user": "alice"}, 422, "jti"),
        ({"user": "al ice"}, 422, "user"),
        ({"user": "alice\n2099-01-01 CRITICAL forged"}, 422, "user"),
        ({"user": ["alice"]}, 422, "user"),
        ({"user": "alice", "issued_before": -1}, 422, "issued_before"),
        ({"user": "alice", "issued_before": 2**60}, 422, "issued_before"),
        ({"user": "alice", "issued_before": 10**30}, 422, "issued_before"),
        ({"user": "alice", "issued_before": 1.5}, 422, "issued_before"),
        ({"user": "alice", "issued_before": True}, 422, "issued_before"),
        ({"user": "alice", "issued_before": "now"}, 422, "issued_before"),
        ({"user": "alice", "reason": "left"}, 422, "reason"),
    ],
)
async def test_hostile_revocations_are_refused_and_change_nothing(
    node: RunningNode, http: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    reply = await http.post("/v1/admin/tokens/revoke", json=body, headers=admin(node))
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["message"].startswith(f"{field}:")
    snapshot = await node.node.backend.accounts.snapshot()
    assert (snapshot.accounts, snapshot.revoked) == ([], [])


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[" * 60_000,
        b'{"user": NaN}',
        b'{"user": "a", "issued_before": 1e999}',
        b"x" * 70_000,
    ],
)
async def test_bodies_that_are_not_json_or_too_big_are_refused(
    node: RunningNode, http: httpx.AsyncClient, raw: bytes
) -> None:
    headers = {**admin(node), "Content-Type": "application/json"}
    reply = await http.post("/v1/admin/tokens/revoke", content=raw, headers=headers)
    assert reply.status_code in (400, 413), reply.text
    assert (await node.node.backend.accounts.snapshot()).accounts == []


@pytest.mark.parametrize("user", ["al%20ice", "a%0Ab", "%00", "x" * 300])
async def test_user_ids_in_the_path_are_checked(
    node: RunningNode, http: httpx.AsyncClient, user: str
) -> None:
    for reply in (
        await http.post(f"/v1/admin/users/{user}/disable", headers=admin(node)),
        await http.get(f"/v1/admin/users/{user}", headers=admin(node)),
    ):
        assert (reply.status_code, reply.json()["error"]["code"]) == (422, "invalid"), user
    assert (await node.node.backend.accounts.snapshot()).accounts == []


async def test_devices_lists_every_device_of_the_user_with_its_app(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    async with phone(node, "erin", device="tablet", hello=False) as tablet:
        hello = {"type": "hello", "token": node.token("erin"), "device": "tablet", "app": "a/1"}
        assert (await tablet.request(hello))["type"] == "welcome"
    async with phone(node, "erin", device="pixel-7"):
        reply = await http.get("/v1/admin/users/erin/devices", headers=admin(node))
        assert reply.status_code == 200
        devices = reply.json()
    assert [(d["device"], d["app"], d["state"], d["online"]) for d in devices] == [
        ("tablet", "a/1", "active", False),
        ("pixel-7", "", "active", True),
    ]
    assert all(d["node"] == node.settings.node_id for d in devices)
    assert devices[0]["first_seen"] <= devices[0]["last_seen"] <= devices[1]["first_seen"]
    other = await http.get("/v1/admin/users/erin/devices", headers=bearer(node.token("x")))
    assert other.status_code == 403
    assert (await http.get("/v1/admin/users/nobody/devices", headers=admin(node))).json() == []


@pytest.mark.parametrize("app", ["", "x" * 101, 5, ["a"], {"v": 1}])
async def test_a_hello_with_a_malformed_app_is_refused(node: RunningNode, app: object) -> None:
    async with phone(node, "fred", hello=False) as device:
        await device.send({"type": "hello", "token": node.token("fred"), "device": "d", "app": app})
        assert await device.closed_with() == 4001
    assert await node.node.backend.devices.of_user("fred") == []
