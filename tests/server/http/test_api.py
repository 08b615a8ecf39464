"""The HTTP API in-process: publish, poll, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import phone, publish
from tests.support.scrape import value
from tests.support.timing import eventually


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings(max_publish_bytes=2048)) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


VALID = {
    "channels": ["team:north"],
    "kind": "work_order.urgent",
    "priority": "critical",
    "data": {"wo": 1},
}


async def test_publish_reply_and_history(node: RunningNode, http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/v1/publish", json=VALID, headers=bearer(node.token("d", "dispatcher"))
    )
    assert reply.status_code == 201
    body = reply.json()
    assert set(body) == {"id", "offsets"} and set(body["offsets"]) == {"team:north"}
    # In history before the reply: a poll from the start of the epoch finds it.
    epoch = body["offsets"]["team:north"].split(":")[0]
    polled = await http.post(
        "/v1/poll",
        json={"subs": {"team:north": f"{epoch}:0-0"}},
        headers=bearer(node.token("a", teams=("north",))),
    )
    assert [e["id"] for e in polled.json()["events"]] == [body["id"]]


@pytest.mark.parametrize("role", ["dispatcher", "service", "admin"])
async def test_publisher_roles(node: RunningNode, http: httpx.AsyncClient, role: str) -> None:
    reply = await http.post("/v1/publish", json=VALID, headers=bearer(node.token("p", role)))
    assert reply.status_code == 201


async def test_publish_auth_comes_before_the_body(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    assert (await http.post("/v1/publish", content=b"junk")).status_code == 401
    expired = node.token("d", "dispatcher", ttl_s=-60)
    reply = await http.post("/v1/publish", content=b"junk", headers=bearer(expired))
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"
    assert reply.headers["www-authenticate"] == "Bearer"
    for role in ("sales", "after_sales", "supervisor"):
        reply = await http.post(
            "/v1/publish", content=b"junk", headers=bearer(node.token("s", role))
        )
        assert reply.status_code == 403, role
    dispatch = {**VALID, "channels": ["dispatch"]}
    reply = await http.post(
        "/v1/publish", json=dispatch, headers=bearer(node.token("d", "dispatcher"))
    )
    assert reply.status_code == 403
    assert (
        await http.post("/v1/publish", json=dispatch, headers=bearer(node.token("s", "service")))
    ).status_code == 201


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channels": []}, "channels"),
        ({"channels": "team:north"}, "channels"),
        ({"channels": ["team:north", "team:north"]}, "channels"),
        ({"channels": ["room:1"]}, "channels"),
        ({"kind": ""}, "kind"),
        ({"kind": None}, "kind"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": []}, "priority"),
        ({"priority": {"level": 1}}, "priority"),
        ({"data": [1]}, "data"),
        ({"data": None}, "data"),
        ({"idempotency_key": 5}, "idempotency_key"),
        ({"priority": "normal", "ack_deadline_s": 30}, "ack_deadline_s"),
        ({"ack_deadline_s": -1}, "ack_deadline_s"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_invalid_publish_bodies_name_the_field(
    node: RunningNode, http: httpx.AsyncClient, change: dict[str, object], field: str
) -> None:
    body = {**VALID, **change}
    reply = await http.post("/v1/publish", json=body, headers=bearer(node.token("d", "dispatcher")))
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid" and error["message"].startswith(field)


async def test_publish_not_json_and_too_large(node: RunningNode, http: httpx.AsyncClient) -> None:
    headers = bearer(node.token("d", "dispatcher"))
    assert (await http.post("/v1/publish", content=b"{oops", headers=headers)).status_code == 400
    assert (await http.post("/v1/publish", content=b"[1]", headers=headers)).status_code == 422
    for not_json in (b'{"data": {"x": NaN}}', b'{"data": {"x": -Infinity}}', b'{"x": 1e999}'):
        reply = await http.post("/v1/publish", content=not_json, headers=headers)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["message"].startswith("body is not valid JSON")
    big = {**VALID, "data": {"pad": "x" * 4000}}
    assert (await http.post("/v1/publish", json=big, headers=headers)).status_code == 413


async def test_unknown_routes_and_methods_get_json_errors(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    missing = await http.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"code": "not_found", "message": "no route GET /v1/nothing"}
    wrong = await http.get("/v1/poll")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json()["error"]["code"] == "bad_request"


async def test_idempotency_key(node: RunningNode, http: httpx.AsyncClient) -> None:
    headers = bearer(node.token("d", "dispatcher"))
    body = {**VALID, "idempotency_key": "wo-1"}
    first = await http.post("/v1/publish", json=body, headers=headers)
    again = await http.post("/v1/publish", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    conflict = await http.post("/v1/publish", json={**body, "data": {"wo": 2}}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    other = await http.post(
        "/v1/publish", json=body, headers=bearer(node.token("d2", "dispatcher"))
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    history = await node.node.backend.read("team:north", None, 10)
    assert history.top.seq == 2  # one event per publisher, none for the retry


async def test_poll_waits_for_a_live_event(node: RunningNode, http: httpx.AsyncClient) -> None:
    token = node.token("alice", teams=("north",))
    first = (
        await http.post("/v1/poll", json={"subs": {"team:north": None}}, headers=bearer(token))
    ).json()
    assert first["events"] == [] and first["recovered"] == {"team:north": True}
    waiting = asyncio.create_task(
        http.post("/v1/poll", json={"subs": first["offsets"], "wait_s": 10}, headers=bearer(token))
    )

    def waiting_on_the_feed() -> bool:
        feed = node.node.hub.feed("team:north")
        return feed is not None and bool(feed.subs)

    await eventually(waiting_on_the_feed, message="the poll waits on team:north")
    published = await publish(node, ["team:north"], {"n": 1})
    reply = (await waiting).json()
    assert [e["id"] for e in reply["events"]] == [published["id"]]
    assert reply["offsets"]["team:north"] == published["offsets"]["team:north"]
    empty = await http.post(
        "/v1/poll", json={"subs": reply["offsets"], "wait_s": 0.2}, headers=bearer(token)
    )
    assert empty.json()["events"] == [] and empty.json()["offsets"] == reply["offsets"]


async def test_poll_permissions_and_validation(node: RunningNode, http: httpx.AsyncClient) -> None:
    token = node.token("alice", teams=("north",))
    assert (
        await http.post("/v1/poll", json={"subs": {"team:south": None}}, headers=bearer(token))
    ).status_code == 403
    assert (
        await http.post("/v1/poll", json={"subs": {}}, headers=bearer(token))
    ).status_code == 422
    assert (
        await http.post(
            "/v1/poll", json={"subs": {"team:north": None}, "wait_s": "x"}, headers=bearer(token)
        )
    ).status_code == 422
    assert (await http.post("/v1/poll", json={"subs": {"team:north": None}})).status_code == 401
    stale = await http.post(
        "/v1/poll", json={"subs": {"team:north": "old:5-5"}}, headers=bearer(token)
    )
    assert stale.status_code == 200 and stale.json()["recovered"] == {"team:north": False}


async def test_health_ready_metrics(node: RunningNode, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["status"] == "ok"
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["backend"] == "memory"
    async with phone(node, "alice", teams=("north",), subs={"team:north": None}) as alice:
        await publish(node, ["team:north"])
        await alice.events(1)
        text = (await http.get("/metrics")).text
    assert value(text, "fieldpush_events_delivered_total", priority="normal") == 1
    assert value(text, "fieldpush_published_total", kind="team") == 1
    assert value(text, "fieldpush_sessions") == 1
    assert "alice" not in text and "north" not in text  # no raw ids in labels


async def test_publish_without_subscribers_and_to_many_channels(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    channels = [f"user:u{i}" for i in range(50)]
    reply = await http.post(
        "/v1/publish",
        json={**VALID, "channels": channels},
        headers=bearer(node.token("d", "dispatcher")),
    )
    assert reply.status_code == 201
    offsets = reply.json()["offsets"]
    assert set(offsets) == set(channels)
    assert json.dumps(offsets)  # plain strings
