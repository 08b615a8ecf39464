"""A socket lives on its token (issue 11, item 5): ``refresh_needed`` ahead of
``exp``, ``refresh`` to extend it, 4001 at ``exp`` plus the grace without one,
and a refresh that narrows the identity ends the subscriptions it no longer
allows. Real sockets on port 0; tokens of a few seconds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from fieldpush_client.protocol import MAX_TOKEN_LENGTH
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import Phone, phone, pong_next, publish
from tests.support.timing import eventually, scaled

#: The first token's lifetime: ``refresh_needed`` comes 1 s before its ``exp``.
TTL_S = 3


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    settings = node_settings(refresh_lead_s=1, refresh_grace_s=1)
    async with running_node(settings) as running:
        yield running


def _exp_ms(token: str) -> int:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return int(claims["exp"]) * 1000


async def _refresh_needed(device: Phone) -> dict[str, Any]:
    message = await device.recv(timeout=TTL_S + 2)
    assert message["type"] == "refresh_needed", message
    return message


async def _past(deadline_ms: int) -> None:
    """Return once the wall clock is past ``deadline_ms`` (plus a margin)."""
    margin_ms = scaled(0.5) * 1000
    await eventually(
        lambda: time.time() * 1000 > deadline_ms + margin_ms,
        timeout=TTL_S + 10,
        interval=0.05,
        message="the deadline passed",
    )


async def test_refresh_needed_arrives_before_exp(node: RunningNode) -> None:
    token = node.token("alice", ttl_s=TTL_S)
    async with phone(node, token=token) as device:
        needed = await _refresh_needed(device)
        assert time.time() * 1000 < needed["expires_at"] == _exp_ms(token)
        assert set(needed) == {"type", "expires_at"}


async def test_a_valid_refresh_extends_the_connection(node: RunningNode) -> None:
    token = node.token("alice", teams=("north",), ttl_s=TTL_S)
    async with phone(node, token=token, subs={"team:north": None}) as device:
        await _refresh_needed(device)
        fresh = node.token("alice", teams=("north",), ttl_s=600)
        reply = await device.request({"type": "refresh", "id": 7, "token": fresh})
        assert reply == {"type": "refreshed", "id": 7, "expires_at": _exp_ms(fresh)}
        await _past(_exp_ms(token) + 1000)  # the first token's exp plus the grace
        sent = await publish(node, ["team:north"], {"n": 1})
        [event] = await device.events(1)
        assert event["id"] == sent["id"]
        await pong_next(device)


async def test_without_a_refresh_the_socket_closes_4001_after_exp_and_grace(
    node: RunningNode,
) -> None:
    token = node.token("alice", teams=("north",), ttl_s=TTL_S)
    async with phone(node, token=token) as device:
        await _refresh_needed(device)
        # Until then, everything works as before.
        reply = await device.request({"type": "subscribe", "id": 1, "channel": "team:north"})
        assert reply["type"] == "subscribed"
        await pong_next(device)
        assert await device.closed_with(timeout=TTL_S + 5) == 4001
        assert device.ws.close_reason == "token expired"
        assert time.time() * 1000 >= _exp_ms(token) + 1000
    await eventually(lambda: node.node.metrics.closed[4001] >= 1, message="the close is counted")


@pytest.mark.parametrize("which", ["another user", "garbage", "expired"])
async def test_a_refused_refresh_leaves_the_connection_as_it_was(
    node: RunningNode, which: str
) -> None:
    token = node.token("alice", ttl_s=TTL_S)
    refused = {
        "another user": node.token("bob", ttl_s=600),
        "garbage": "not.a.token",
        "expired": node.token("alice", ttl_s=-60),
    }[which]
    async with phone(node, token=token) as device:
        reply = await device.request({"type": "refresh", "id": 3, "token": refused})
        assert reply["type"] == "error" and reply["code"] == "unauthorized", reply
        assert reply["id"] == 3
        await pong_next(device)
        # The old expiry still holds: asked to refresh, then closed.
        needed = await _refresh_needed(device)
        assert needed["expires_at"] == _exp_ms(token)
        assert await device.closed_with(timeout=TTL_S + 5) == 4001


@pytest.mark.parametrize(
    "message",
    [
        {"type": "refresh", "id": 4},
        {"type": "refresh", "id": 4, "token": 12},
        {"type": "refresh", "id": 4, "token": None},
        {"type": "refresh", "id": 4, "token": ["a"]},
        {"type": "refresh", "id": 4, "token": ""},
        {"type": "refresh", "id": 4, "token": "x" * (MAX_TOKEN_LENGTH + 1)},
        {"type": "refresh", "id": 4, "token": "x", "user": "bob"},
    ],
    ids=["missing", "int", "null", "list", "empty", "huge", "extra field"],
)
async def test_hostile_refresh_messages_get_bad_request_and_change_nothing(
    node: RunningNode, message: dict[str, Any]
) -> None:
    token = node.token("alice", teams=("north",), ttl_s=TTL_S)
    async with phone(node, token=token, subs={"team:north": None}) as device:
        reply = await device.request(message)
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert reply["id"] == 4
        sent = await publish(node, ["team:north"], {"n": 1})
        [event] = await device.events(1)
        assert event["id"] == sent["id"]
        assert (await _refresh_needed(device))["expires_at"] == _exp_ms(token)


async def test_a_refresh_without_a_team_ends_that_teams_subscription(node: RunningNode) -> None:
    token = node.token("alice", teams=("north", "south"))
    subs: dict[str, str | None] = {"team:north": None, "team:south": None}
    async with phone(node, token=token, subs=subs) as device:
        fresh = node.token("alice", teams=("north",))
        reply = await device.request({"type": "refresh", "id": 1, "token": fresh})
        assert reply["type"] == "refreshed"
        assert await device.recv() == {"type": "unsubscribed", "channel": "team:south"}
        await publish(node, ["team:south"], {"n": 1})
        sent = await publish(node, ["team:north"], {"n": 2})
        [event] = await device.events(1)  # the live feed is in order: south's came first
        assert event["id"] == sent["id"]
        refused = await device.request({"type": "subscribe", "id": 2, "channel": "team:south"})
        assert refused["code"] == "forbidden"


async def test_a_refresh_with_a_lesser_role_ends_what_the_role_allowed(node: RunningNode) -> None:
    token = node.token("sam", role="supervisor", teams=("north",))
    subs: dict[str, str | None] = {"records:north": None, "dispatch": None, "team:north": None}
    async with phone(node, token=token, subs=subs) as device:
        assert all("offset" in state for state in device.welcome["subs"].values())
        fresh = node.token("sam", role="sales", teams=("north",))
        reply = await device.request({"type": "refresh", "id": 1, "token": fresh})
        assert reply["type"] == "refreshed"
        ended = [await device.recv(), await device.recv()]
        assert ended == [
            {"type": "unsubscribed", "channel": "records:north"},
            {"type": "unsubscribed", "channel": "dispatch"},
        ]
        await pong_next(device)
        sent = await publish(node, ["team:north"], {"n": 1})
        assert (await device.events(1))[0]["id"] == sent["id"]


async def test_refresh_over_msgpack(node: RunningNode) -> None:
    async with phone(node, binary=True) as device:
        fresh = node.token("alice", ttl_s=900)
        reply = await device.request({"type": "refresh", "id": 2**40, "token": fresh})
        assert reply == {"type": "refreshed", "id": 2**40, "expires_at": _exp_ms(fresh)}
        await pong_next(device)
