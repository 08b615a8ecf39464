"""The change-feed webhook (docs/sync.md, "Webhook") through real nodes and a
real receiver on port 0: every entry of GET /v1/changes is POSTed, signed, in
order, once per de-dup key (the entry's cursor), through failures, restarts and a takeover by
another node; hostile receivers do not break the node."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from fieldpush.settings import Secret
from tests.support.node import NodeFactory, RunningNode, node_settings, running_node
from tests.support.receiver import Behaviour, Receiver, receiver
from tests.support.scrape import value
from tests.support.timing import eventually, scaled

SECRET = "whsec-test-0123456789abcdef0123456789abcdef"


def hook(r: Receiver, **overrides: Any) -> dict[str, Any]:
    """Node settings that deliver to ``r`` quickly."""
    values: dict[str, Any] = {
        "webhook_url": r.url,
        "webhook_secret": Secret(SECRET),
        "webhook_batch_entries": 2,
        "webhook_linger_s": 0.02,
        "webhook_backoff_min_s": 0.01,
        "webhook_backoff_max_s": 0.05,
        "webhook_timeout_s": scaled(1),
        "webhook_lease_s": scaled(3),
    }
    values.update(overrides)
    return values


async def call(node: RunningNode, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {node.token('crm', 'service')}"}
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.request(method, path, headers=headers, **kwargs)


async def put(node: RunningNode, names: Iterable[str]) -> None:
    """The CRM writes one customer per name, in order (one change each)."""
    headers = {"Authorization": f"Bearer {node.token('crm', 'service')}"}
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=scaled(10)) as http:
        for name in names:
            fields = {"name": name, "owner": "alice", "team": "north"}
            reply = await http.put(f"/v1/records/customer/c-{name}", json={"fields": fields})
            assert reply.status_code == 200, reply.text


async def proposal(node: RunningNode, rid: str, name: str) -> None:
    """A sales phone renames a customer: refused, kept in the feed as a proposal."""
    headers = {"Authorization": f"Bearer {node.token('alice', 'sales', ('north',))}"}
    edit = {"mid": "p1", "type": "customer", "rid": rid, "fields": {"name": name}}
    body = {"mutations": [{**edit, "hlc": [time.time_ns() // 1_000_000, 0]}], "device": "a-phone"}
    async with httpx.AsyncClient(base_url=node.url, headers=headers, timeout=scaled(10)) as http:
        reply = await http.post("/v1/sync/push", json=body)
    assert reply.status_code == 200 and reply.json()["results"][0]["status"] != "applied"


async def feed(node: RunningNode) -> list[dict[str, Any]]:
    reply = await call(node, "GET", "/v1/changes", params={"limit": 1000})
    changes: list[dict[str, Any]] = reply.json()["changes"]
    return changes


async def delivered(r: Receiver, count: int) -> list[dict[str, Any]]:
    return await eventually(
        r.entries, until=lambda e: len(e) >= count, message=f"{count} entries not delivered"
    )


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["fields"]["name"]["new"] for e in entries]


async def test_500_three_times_then_200_delivers_every_entry_once_in_order(
    start_node: NodeFactory,
) -> None:
    """The issue's test: every entry once, in feed order, by the de-dup key."""
    async with receiver([500, 500, 500]) as r, start_node(**hook(r)) as node:
        await put(node, ["a", "b", "c", "d"])
        await proposal(node, "c-a", "A renamed by a phone")  # refused: the CRM owns names
        await put(node, ["e"])
        entries = await delivered(r, 6)
        assert entries == await feed(node)  # exactly as GET /v1/changes answers them
        assert [e["kind"] for e in entries] == ["applied"] * 4 + ["proposal", "applied"]
        assert names(entries) == ["a", "b", "c", "d", "A renamed by a phone", "e"]
        assert [q.answered for q in r.requests[:3]] == [500, 500, 500]
        assert r.requests[3].body == r.requests[0].body  # a retry is the same body
        for request in r.accepted:
            payload = request.payload
            assert payload["id"] == payload["cursor"] == payload["changes"][-1]["cursor"]
            assert 1 <= len(payload["changes"]) <= 2 and payload["gap"] is False
        ids = [q.payload["id"] for q in r.accepted]
        assert len(ids) == len(set(ids))  # no batch was accepted twice
        r.verify_all(SECRET)
        metrics = node.node.metrics
        await eventually(lambda: metrics.webhook_entries == 6, message="entries not counted")
        assert metrics.webhook_failures == {"status_5xx": 3}
        text = (await call(node, "GET", "/metrics")).text
        assert value(text, "fieldpush_webhook_failures_total", reason="status_5xx") == 3
        assert value(text, "fieldpush_webhook_deliveries_total", outcome="failed") == 3
        assert value(text, "fieldpush_webhook_deliveries_total", outcome="delivered") >= 1
        assert value(text, "fieldpush_webhook_delivering") == 1


def on_redis(redis_url: str, **settings: Any) -> AbstractAsyncContextManager[RunningNode]:
    """A node on the shared Redis (what survives a restart, what nodes share)."""
    return running_node(node_settings(redis_url=redis_url, **settings))


async def test_a_restart_resumes_from_the_stored_cursor(redis_url: str) -> None:
    """On Redis: the memory backend's log and cursor both end with the process."""
    async with receiver() as r:
        async with on_redis(redis_url, **hook(r)) as first:
            await put(first, ["a", "b", "c"])
            await delivered(r, 3)
            await eventually(lambda: first.node.metrics.webhook_entries == 3, message="not stored")
        async with on_redis(redis_url, **hook(r)) as second:
            await put(second, ["d", "e"])
            await delivered(r, 5)
            assert names(r.entries()) == ["a", "b", "c", "d", "e"]
            delivered_once = [c["cursor"] for q in r.accepted for c in q.payload["changes"]]
            assert len(delivered_once) == 5  # nothing sent again after a clean restart
            assert r.entries() == await feed(second)


async def test_two_nodes_one_deliverer_and_a_takeover_without_loss(redis_url: str) -> None:
    async with (
        receiver() as r,
        on_redis(redis_url, **hook(r), node_id="a") as a,
        on_redis(redis_url, **hook(r), node_id="b") as b,
    ):
        hooks = [a.node.webhook, b.node.webhook]
        assert hooks[0] is not None and hooks[1] is not None
        await eventually(
            lambda: [h.delivering for h in hooks].count(True) == 1,
            message="not exactly one deliverer",
        )
        await put(a, ["a", "b"])
        await put(b, ["c"])
        await delivered(r, 3)
        assert [h.delivering for h in hooks].count(True) == 1
        active, standby = (a, b) if hooks[0].delivering else (b, a)
        await eventually(
            lambda: active.node.metrics.webhook_entries == 3, message="cursor not stored"
        )
        assert standby.node.metrics.webhook_entries == 0
        await active.node.webhook.close()  # type: ignore[union-attr]  # this node stops delivering
        standby_hook = standby.node.webhook
        assert standby_hook is not None
        await eventually(lambda: standby_hook.delivering, message="no takeover")
        await put(standby, ["d", "e", "f"])
        await delivered(r, 6)
        assert names(r.entries()) == ["a", "b", "c", "d", "e", "f"]
        assert r.entries() == await feed(standby)
        cursors = [c["cursor"] for q in r.accepted for c in q.payload["changes"]]
        assert len(cursors) == 6  # a clean handover sends nothing twice
        r.verify_all(SECRET)


async def test_hostile_receivers_do_not_break_the_node(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that hangs, redirects, answers garbage or an endless body,
    or refuses: each attempt fails with its reason and is retried; the node
    keeps serving; nothing the receiver sent and not the secret reaches a log."""
    script: list[Behaviour] = ["hang", "redirect", "garbage", "huge", 404]
    caplog.set_level(logging.INFO, logger="fieldpush.webhook")
    async with receiver(script) as r, start_node(**hook(r, webhook_timeout_s=scaled(0.3))) as node:
        await put(node, ["a"])
        entries = await delivered(r, 1)
        assert names(entries) == ["a"]
        assert [q.answered for q in r.requests] == [*script, 200]
        assert all(q.path.startswith("/hooks/") for q in r.requests)  # no redirect followed
        failures = node.node.metrics.webhook_failures
        assert failures == {
            "timeout": 1,
            "redirect": 1,
            "protocol": 1,
            "status_5xx": 1,
            "status_4xx": 1,
        }
        assert (await call(node, "GET", "/healthz")).status_code == 200
        await put(node, ["b"])
        assert names(await delivered(r, 2)) == ["a", "b"]
    logged = caplog.text
    assert "no answer within" in logged and "HTTP 307" in logged
    assert "EVIL" not in logged and "\x1b" not in logged
    assert SECRET not in logged and "hidden" not in logged  # nor the URL's query


async def test_a_cursor_older_than_the_log_continues_with_a_gap(
    start_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries trimmed before they were delivered: an error, the counter, and
    the next body says ``gap: true``; delivery goes on from the oldest kept."""
    async with receiver(open_gate=False) as r:
        settings = hook(r, webhook_batch_entries=100, sync_log_max_entries=3)
        async with start_node(**settings) as node:
            await put(node, ["a"])
            await eventually(lambda: len(r.requests) >= 1, message="no attempt")
            # The batch [a] is in flight; the log moves on past its cursor (Redis
            # trims whole stream nodes, about 100 entries).
            await put(node, [f"x{i}" for i in range(300)])
            kept = await feed(node)
            assert 3 <= len(kept) < 300
            r.gate.set()
            entries = await delivered(r, 1 + len(kept))
            assert names(entries[:1]) == ["a"]
            assert entries[1:] == kept and names(kept)[-1] == "x299"
            gaps = [q.payload["gap"] for q in r.accepted]
            assert gaps[:2] == [False, True] and not any(gaps[2:])
            assert node.node.metrics.webhook_gaps == 1
    assert "older than the retained change log" in caplog.text


async def test_an_unexpected_error_taking_the_lease_is_retried_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug or a broken script while taking the lease once: the deliverer logs
    it and tries again, rather than ending for good with nothing said."""
    from fieldpush.backend.memory.webhook import MemoryWebhook

    real_hold = MemoryWebhook.hold
    calls: list[str] = []

    async def flaky(self: MemoryWebhook, holder: str, ttl_ms: int) -> int | None:
        calls.append(holder)
        if len(calls) == 1:
            raise RuntimeError("a broken lease script")
        return await real_hold(self, holder, ttl_ms)

    monkeypatch.setattr(MemoryWebhook, "hold", flaky)
    with caplog.at_level(logging.ERROR, logger="fieldpush.webhook"):
        async with (
            receiver([]) as r,
            running_node(node_settings(**hook(r, webhook_lease_s=0.3))) as node,
        ):
            await put(node, ["a"])
            assert names(await delivered(r, 1)) == ["a"]
    assert "taking the lease failed" in caplog.text
