"""``/metrics``: the families of docs/operations.md ("Metrics"), parsed by
prometheus-client's own parser; their counts move when the thing happens,
also while the Redis link is cut; the separate metrics listener."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import httpx
import pytest
from prometheus_client.metrics_core import Metric

from tests.support.cli import ServeProcess
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import api_get, connect_phone, phone, publish
from tests.support.proxy import proxy_to
from tests.support.redis_server import RedisServer
from tests.support.scrape import families, value
from tests.support.timing import eventually, scaled
from tests.sync.test_sync import Api, mutation, seed

#: The contract (docs/operations.md): family name -> (type, label names).
#: The drift family (fieldpush_drift_records_total, fieldpush_devices_drifting)
#: belongs to the drift digests of issue 15 item 2.
CONTRACT = {
    "fieldpush_connections": ("gauge", {"transport", "role"}),
    "fieldpush_critical_pending": ("gauge", set()),
    "fieldpush_backend_up": ("gauge", set()),
    "fieldpush_webhook_lag_seconds": ("gauge", set()),
    "fieldpush_audit_checkpoint_age_seconds": ("gauge", set()),
    "fieldpush_build_info": ("gauge", {"version", "python"}),
    "fieldpush_connections_opened": ("counter", {"transport"}),
    "fieldpush_handshakes": ("counter", {"outcome"}),
    "fieldpush_handshake_refusals": ("counter", {"reason"}),
    "fieldpush_publishes": ("counter", {"priority"}),
    "fieldpush_publish_errors": ("counter", {"code"}),
    "fieldpush_events_delivered": ("counter", {"priority"}),
    "fieldpush_escalations": ("counter", set()),
    "fieldpush_sync_mutations": ("counter", {"outcome", "reason"}),
    "fieldpush_backend_errors": ("counter", set()),
    "fieldpush_backend_reconnects": ("counter", set()),
    "fieldpush_outbox_closes": ("counter", set()),
    "fieldpush_rate_limited": ("counter", {"what"}),
    "fieldpush_webhook_deliveries": ("counter", {"outcome"}),
    "fieldpush_audit_appends": ("counter", set()),
    "fieldpush_publish_duration_seconds": ("histogram", {"priority"}),
    "fieldpush_delivery_latency_seconds": ("histogram", {"priority"}),
    "fieldpush_ack_roundtrip_seconds": ("histogram", {"priority"}),
    "fieldpush_sync_mutate_duration_seconds": ("histogram", set()),
    "fieldpush_sync_pull_duration_seconds": ("histogram", set()),
    "fieldpush_sync_pull_records": ("histogram", set()),
}
PRIORITIES = {"critical", "high", "normal", "low"}


def labels_of(family: Metric) -> set[str]:
    """The label names of a family's samples (a histogram's ``le`` aside); one set."""
    found = {frozenset(set(sample.labels) - {"le"}) for sample in family.samples}
    assert len(found) == 1, (family.name, found)
    return set(next(iter(found)))


async def scrape(node: RunningNode) -> str:
    reply = await api_get(node, "/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return reply.text


async def test_every_family_of_the_contract_with_its_type_labels_and_counts() -> None:
    async with running_node() as node:
        crm = Api(node, "crm", "service")
        await seed(crm)  # 3 records applied by the CRM
        alice_api = Api(node, "alice", "sales", ("north",))
        [refused] = await alice_api.push(mutation("m1", "c-south", name="mine now"))
        assert refused["status"] == "rejected"
        await alice_api.pull()
        async with phone(node, "alice", teams=("north",), subs={"team:north": None}) as alice:
            await publish(node, ["team:north"], priority="normal")
            critical = await publish(node, ["team:north"], priority="critical")
            events = await alice.events(2)
            assert [e["priority"] for e in events] == ["normal", "critical"]
            assert value(await scrape(node), "fieldpush_critical_pending") == 1
            await alice.send({"type": "ack", "ids": [critical["id"]]})
            await eventually(
                lambda: sum(node.node.metrics.ack_roundtrip["critical"].counts),
                message="the ack round trip is observed",
            )
            async with connect_phone(node.ws_url, "not-a-token", hello=False) as forged:
                await forged.send({"type": "hello", "token": "not-a-token", "device": "x"})
                assert await forged.closed_with() == 4001
            async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
                sales = {"Authorization": f"Bearer {node.token('alice', 'sales')}"}
                body = {"channels": ["team:north"], "kind": "k", "data": {}}
                assert (await http.post("/v1/publish", json=body, headers=sales)).status_code == 403
            text = await scrape(node)
    found = families(text)  # fails on a name given to two families
    for name, (kind, labels) in CONTRACT.items():
        assert name in found, f"{name} missing"
        assert found[name].type == kind, (name, found[name].type)
        assert labels_of(found[name]) == labels, name
    assert any(name.startswith("process_") for name in found)  # prometheus-client's collector
    assert value(text, "fieldpush_connections", transport="websocket", role="sales") == 1
    assert value(text, "fieldpush_connections_opened_total", transport="websocket") == 2
    assert value(text, "fieldpush_handshakes_total", outcome="accepted") == 1
    assert value(text, "fieldpush_handshakes_total", outcome="refused") == 1
    assert value(text, "fieldpush_handshake_refusals_total", reason="unauthorized") == 1
    for priority in ("normal", "critical"):
        assert value(text, "fieldpush_publishes_total", priority=priority) == 1
        assert value(text, "fieldpush_events_delivered_total", priority=priority) == 1
        assert value(text, "fieldpush_publish_duration_seconds_count", priority=priority) == 1
        assert value(text, "fieldpush_delivery_latency_seconds_count", priority=priority) == 1
    assert value(text, "fieldpush_publishes_total", priority="low") == 0
    assert value(text, "fieldpush_publish_errors_total", code="forbidden") == 1
    assert value(text, "fieldpush_ack_roundtrip_seconds_count", priority="critical") == 1
    assert value(text, "fieldpush_sync_mutations_total", outcome="applied", reason="") == 3
    rejected = [
        s for s in found["fieldpush_sync_mutations"].samples if s.labels["outcome"] == "rejected"
    ]
    assert sum(s.value for s in rejected) == 1 and rejected[-1].labels["reason"] != ""
    assert value(text, "fieldpush_sync_mutate_duration_seconds_count") == 4  # 3 puts, 1 push
    assert value(text, "fieldpush_sync_pull_duration_seconds_count") == 1
    assert value(text, "fieldpush_backend_up") == 1
    assert value(text, "fieldpush_critical_pending") == 0  # acked
    assert value(text, "fieldpush_audit_appends_total") >= 5
    [build] = found["fieldpush_build_info"].samples
    assert build.labels["version"] == "0.1.0" and build.value == 1
    for raw in ("alice", "north", "c-south", "not-a-token"):
        assert raw not in text  # no user, team, record or token in a label


async def test_a_cut_redis_link_is_counted_and_the_node_answers_unavailable(
    redis_server: RedisServer, redis_url: str
) -> None:
    async with proxy_to(("127.0.0.1", redis_server.port)) as link:
        settings = node_settings(
            redis_url=f"redis://127.0.0.1:{link.port}/0", node_id="cut", redis_timeout_s=0.5
        )
        async with running_node(settings) as node:
            crm = Api(node, "crm", "service")
            await seed(crm)
            before = await scrape(node)
            assert value(before, "fieldpush_backend_up") == 1
            link.cut()
            async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
                body = {"channels": ["team:north"], "kind": "k", "data": {}}
                headers = {"Authorization": f"Bearer {node.token('disp', 'dispatcher')}"}
                reply = await http.post("/v1/publish", json=body, headers=headers)
                assert reply.status_code == 503
                push = {"mutations": [mutation("m9", "c-bob", name="B")], "device": "http"}
                reply = await crm.call("POST", "/v1/sync/push", json=push)
                assert reply.status_code == 503
            during = await scrape(node)
            assert value(during, "fieldpush_backend_up") == 0
            assert value(during, "fieldpush_backend_errors_total") >= 2
            assert value(during, "fieldpush_publish_errors_total", code="unavailable") == 1
            assert (
                value(during, "fieldpush_sync_mutations_total", outcome="unavailable", reason="")
                == 1
            )
            link.restore()

            async def reconnected() -> float:
                return value(await scrape(node), "fieldpush_backend_reconnects_total")

            await eventually(reconnected, timeout=20, message="the reconnects are counted")
            await eventually(
                lambda: node.node.backend.health.up, timeout=20, message="the backend is up again"
            )


@pytest.mark.parametrize("port", [0])
async def test_the_metrics_listener_serves_only_metrics_and_the_main_port_none(port: int) -> None:
    async with running_node(node_settings(metrics_port=port)) as node:
        listener = node.metrics_url
        assert listener is not None and listener != node.url
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            main = await http.get(node.url + "/metrics")
            assert main.status_code == 404 and main.json()["error"]["code"] == "not_found"
            scraped = await http.get(listener + "/metrics")
            assert scraped.status_code == 200
            assert scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "fieldpush_build_info" in families(scraped.text)
            for path in ("/", "/healthz", "/v1/publish", "/metrics/../v1"):
                assert (await http.get(listener + path)).status_code == 404
            assert (await http.get(node.url + "/healthz")).status_code == 200


async def test_the_metrics_listener_drops_hostile_heads_and_keeps_serving() -> None:
    settings = node_settings(metrics_port=0, max_header_bytes=1024, header_timeout_s=0.5)
    async with running_node(settings) as node:
        assert node.metrics_url is not None
        host, port = node.metrics_url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), scaled(5)) == b""  # dropped, no answer
        writer.close()
        slow_reader, slow = await asyncio.open_connection(host, int(port))
        slow.write(b"GET /metr")  # never completes its head
        assert await asyncio.wait_for(slow_reader.read(), scaled(5)) == b""
        slow.close()
        with contextlib.suppress(ConnectionError):
            await slow.wait_closed()
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            assert (await http.get(node.metrics_url + "/metrics")).status_code == 200


async def test_a_waiting_poll_is_an_open_longpoll_connection() -> None:
    async with running_node() as node:
        headers = {"Authorization": f"Bearer {node.token('bob', 'supervisor', ('north',))}"}
        body = {"subs": {"team:north": None}, "wait_s": 30}
        async with httpx.AsyncClient(base_url=node.url, timeout=scaled(40)) as http:
            waiting = asyncio.create_task(http.post("/v1/poll", json=body, headers=headers))

            async def open_polls() -> float:
                samples = families(await scrape(node))["fieldpush_connections"].samples
                return sum(s.value for s in samples if s.labels["role"] == "supervisor")

            await eventually(open_polls, message="the waiting poll is an open connection")
            during = await scrape(node)
            assert value(during, "fieldpush_connections", transport="longpoll", role="supervisor")
            await publish(node, ["team:north"])
            assert (await waiting).status_code == 200
        text = await scrape(node)
        assert value(text, "fieldpush_connections", transport="longpoll", role="supervisor") == 0
        assert value(text, "fieldpush_connections_opened_total", transport="longpoll") == 1


def test_fieldpush_serve_moves_metrics_to_the_port_of_the_environment() -> None:
    server = ServeProcess("--port", "0", env={"FIELDPUSH_METRICS_PORT": "0"}).start()
    try:

        def listener() -> str | None:
            found = re.search(r"metrics on (http://\S+)/metrics", server.output)
            return found.group(1) if found else None

        deadline = time.monotonic() + scaled(10)
        while (url := listener()) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the line comes with the app's startup, before or after the banner
        assert url is not None, server.output
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 404
        scraped = httpx.get(url + "/metrics", timeout=10)
        assert scraped.status_code == 200 and "fieldpush_build_info" in families(scraped.text)
    finally:
        assert server.stop() == 0, server.output
