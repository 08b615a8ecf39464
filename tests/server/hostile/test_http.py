"""Hostile HTTP requests on a real node (issue 11, defects 2, 3 and 8): the
offender gets a 4xx with the API's error body, nothing is stored, the node
carries on (a well-formed call afterwards succeeds)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import publish
from tests.support.raw import BODY_ROUTES
from tests.support.timing import scaled


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


def bearer(node: RunningNode, role: str, user: str = "u") -> tuple[str, str]:
    return ("Authorization", f"Bearer {node.token(user, role, ('north',))}")


async def call(
    node: RunningNode, method: str, path: str, headers: list[tuple[str, str]], **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.request(method, path, headers=headers, **kwargs)


async def test_deep_or_oversized_bodies_are_400_on_every_route(node: RunningNode) -> None:
    """Defect 2: 60,000 ``[`` (and nesting just past the limit) → 400 bad_request."""
    bodies = [
        b"[" * 60_000,
        b'{"a":' * 12_000,
        b'{"data":' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"n": 1' + b"0" * 5000 + b"}",
    ]
    for method, path, role in BODY_ROUTES:
        for body in bodies:
            reply = await call(node, method, path, [bearer(node, role)], content=body)
            assert reply.status_code == 400, (path, body[:12], reply.text)
            assert reply.json()["error"]["code"] == "bad_request"
    await publish(node, ["team:north"], {"ok": True})  # the node carries on


async def test_out_of_range_numbers_are_validation_errors(node: RunningNode) -> None:
    """Defect 3: integers beyond 64 bits, ``1e308`` deadlines → 422 / ``validation``;
    nothing is stored."""
    crm = [bearer(node, "service", "crm")]
    huge = 10**30
    put = await call(
        node, "PUT", "/v1/records/customer/c1", crm, json={"fields": {"name": "X", "budget": huge}}
    )
    assert put.status_code == 422, put.text
    now = time.time_ns() // 1_000_000
    for mutation in (
        {"mid": "m1", "type": "customer", "rid": "c2", "fields": {"name": "Y", "budget": huge}},
        {"mid": "m2", "type": "customer", "rid": "c3", "fields": {"name": "Y", "budget": -huge}},
    ):
        mutation["hlc"] = [now, 0]
        push = await call(node, "POST", "/v1/sync/push", crm, json={"mutations": [mutation]})
        assert push.status_code == 200, push.text
        (result,) = push.json()["results"]
        assert (result["status"], result["reason"]) == ("rejected", "validation"), result
    push = await call(node, "POST", "/v1/sync/push", crm, json={"id": huge, "mutations": []})
    assert push.status_code == 422, push.text
    dispatcher = [bearer(node, "dispatcher")]
    for deadline in (1e308, 10**30, 7 * 24 * 3600 + 1):
        body = {
            "channels": ["team:north"],
            "kind": "k",
            "priority": "critical",
            "data": {},
            "ack_deadline_s": deadline,
        }
        reply = await call(node, "POST", "/v1/publish", dispatcher, json=body)
        assert reply.status_code == 422, (deadline, reply.text)
        assert reply.json()["error"]["code"] == "invalid"
    feed = await call(node, "GET", "/v1/changes", crm)
    assert feed.status_code == 200 and feed.json()["changes"] == [], feed.text


async def test_two_authorization_headers_are_401_on_every_route(node: RunningNode) -> None:
    """Defect 8: one rule everywhere; a valid token first or last changes nothing."""
    routes = [*BODY_ROUTES, ("GET", "/v1/presence?channel=team:north", "dispatcher")]
    for method, path, role in routes:
        good = bearer(node, role)
        for pair in ([good, ("Authorization", "Bearer x")], [("Authorization", "Bearer x"), good]):
            reply = await call(node, method, path, pair, json={})
            assert reply.status_code == 401, (path, reply.text)
            assert reply.json()["error"]["message"] == "more than one Authorization header"
            assert reply.headers["www-authenticate"] == "Bearer"
