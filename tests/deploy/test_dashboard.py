"""deploy/grafana/fieldpush.json: importable, templated by data source and node,
and every panel's expression valid and returning data from a REAL Prometheus
(Debian's binary) that scrapes a real ``fieldpush serve`` node under a short load
and evaluates deploy/prometheus/recording.yml (and alerts.yml)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import ServeProcess
from tests.support.cluster import DISPATCHER, start_node, token
from tests.support.phones import connect_phone
from tests.support.prometheus import PrometheusServer, PrometheusTools
from tests.support.redis_server import RedisServer
from tests.support.scrape import value
from tests.support.timing import eventually, scaled

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PRIORITIES = ("critical", "high", "normal", "low")
CRM = {"Authorization": f"Bearer {token('crm', 'service')}"}
ALICE = {"Authorization": f"Bearer {token('alice', 'sales', ('north',))}"}
#: What Grafana puts for its built-in variables (a 15 s scrape: $__rate_interval is
#: 4 x 15 s); the windows hold the scrapes before and after the load.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DEPLOY / "grafana" / "fieldpush.json").read_text())
    return document


def panels(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in document["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels


def targets(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(document)
        for target in panel.get("targets", [])
    ]


def substitute(expression: str, node: str) -> str:
    """The expression as Grafana sends it with ``node`` picked."""
    for name, builtin in BUILTINS.items():
        expression = expression.replace(name, builtin)
    # Grafana escapes a picked value as a regex inside a PromQL string: 127\\.0 ...
    expression = expression.replace("$node", re.escape(node).replace("\\", "\\\\"))
    assert "$" not in expression, f"a template variable is left: {expression}"
    return expression


def variable(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [item for item in document["templating"]["list"] if item["name"] == name]
    return found


# ------------------------------------------------------------------------ the file


def test_the_dashboard_is_importable_and_templated_by_data_source_and_node() -> None:
    document = dashboard()
    assert document["uid"] == "fieldpush" and document["title"]
    assert isinstance(document["schemaVersion"], int) and document["schemaVersion"] >= 36
    source = variable(document, "datasource")
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    node = variable(document, "node")
    assert node["type"] == "query"
    assert node["query"]["query"] == "label_values(fieldpush_build_info, instance)"
    assert node["includeAll"] and node["multi"] and node["allValue"] == ".*"
    ids = [panel["id"] for panel in panels(document)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(document):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], panel["title"]


def test_every_per_node_expression_is_filtered_by_the_node_variable() -> None:
    """Raw series carry ``instance``; the recording rules aggregate all nodes."""
    for title, expression in targets(dashboard()):
        for selector in re.findall(r"\b(fieldpush_\w+|process_\w+)(\{[^}]*\})?", expression):
            assert 'instance=~"$node"' in selector[1], f"{title}: {selector[0]} not per $node"


def test_the_dashboard_shows_what_issue_15_asks_for() -> None:
    expressions = " ".join(expression for _, expression in targets(dashboard()))
    for family in (
        "fieldpush_connections{",
        "fieldpush_events_delivered_total",
        "fieldpush_delivery_latency_seconds_bucket",
        "fieldpush_ack_roundtrip_seconds_bucket",
        "fieldpush_critical_pending",
        "fieldpush_escalations_total",
        "fieldpush:sync_success:ratio_rate10m",
        'outcome=~"conflict|rejected"',
        "fieldpush:drift_records:increase1d",
        "fieldpush_backend_up",
    ):
        assert family in expressions, f"no panel shows {family}"
    (success,) = [
        panel for panel in panels(dashboard()) if panel["title"].startswith("Sync success rate (")
    ]
    steps = success["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [step["value"] for step in steps] == [None, 0.995]


# -------------------------------------------------------------------- the live test


async def load(node: ServeProcess) -> None:
    """A short load that moves every panel: a refused handshake; an event of every
    priority to a phone that acks; a critical one to a user with no phone, which
    escalates; sync mutations applied, in conflict and rejected; pulls with a
    digest that drifts and its repair."""
    async with connect_phone(node.ws_url, None, hello=False) as intruder:
        await intruder.send({"type": "hello", "token": "not-a-token", "device": "x"})
        assert await intruder.closed_with() == 4001
    async with (
        connect_phone(node.ws_url, token("alice", "sales", ("north",))) as phone,
        httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http,
    ):
        # A held low event goes out with the next one.
        for priority in ("low", "critical", "high", "normal"):
            channels = ["user:alice", "user:bob"] if priority == "critical" else ["user:alice"]
            extra = {"ack_deadline_s": 1} if priority == "critical" else {}
            body = {"channels": channels, "kind": "work_order", "priority": priority}
            reply = await http.post(
                "/v1/publish", json={**body, "data": {}, **extra}, headers=DISPATCHER
            )
            assert reply.status_code == 201, reply.text
        events = await phone.events(len(PRIORITIES))
        assert {event["priority"] for event in events} == set(PRIORITIES)
        await phone.send({"type": "ack", "ids": [event["id"] for event in events]})
        await sync_mutations(http)
        await drift(http)
    await eventually(
        lambda: scraped(node, "fieldpush_escalations_total"),
        until=lambda value: value >= 1,
        message="bob's unacked critical event escalated",
        timeout=10,
    )


async def sync_mutations(http: httpx.AsyncClient) -> None:
    record = {"fields": {"name": "ACME", "owner": "alice", "team": "north", "stage": "lead"}}
    reply = await http.put("/v1/records/customer/c1", json=record, headers=CRM)
    assert reply.status_code == 200, reply.text
    now = time.time_ns() // 1_000_000
    edits = [({"stage": "signed"}, now), ({"name": "X"}, now), ({"stage": "lost"}, now - 60_000)]
    mutations = [
        {"mid": f"m{n}", "type": "customer", "rid": "c1", "fields": fields, "hlc": [ms, 0]}
        for n, (fields, ms) in enumerate(edits)
    ]
    reply = await http.post(
        "/v1/sync/push", json={"device": "a-phone", "mutations": mutations}, headers=ALICE
    )
    assert reply.status_code == 200, reply.text
    statuses = [result["status"] for result in reply.json()["results"]]
    assert statuses == ["applied", "rejected", "conflict"], reply.json()


async def pull(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/v1/sync/pull", json={"types": ["customer"], **body}, headers=ALICE)


async def drift(http: httpx.AsyncClient) -> None:
    """Alice pulls her customers, says she holds none of them (a digest of 0), and
    repairs the buckets the node finds differing: her customers count as drifted
    records and her phone as drifting."""
    reply = await pull(http, {})
    assert reply.status_code == 200, reply.text
    cursor = reply.json()["cursor"]
    assert not reply.json()["more"]
    nothing = {"customer": {"count": 0, "hash": "0" * 16}}
    reply = await pull(http, {"cursor": cursor, "digest": nothing})
    assert reply.status_code == 200, reply.text
    differs = reply.json()["drift"]["differs"]
    buckets = [int(bucket) for bucket in differs["customer"]["buckets"]]
    repair = {"customer": {"buckets": buckets, "held": {}}}
    reply = await pull(http, {"cursor": cursor, "repair": repair})
    assert reply.status_code == 200 and reply.json()["repair"] is True, reply.text


async def scraped(node: ServeProcess, sample: str) -> float:
    """The value of the unlabelled ``sample`` on the node's /metrics now."""
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        return value((await http.get(node.url + "/metrics")).text, sample)


def has_data(answer: dict[str, Any]) -> bool:
    """A vector with at least one sample that is a number (not NaN)."""
    if answer.get("status") != "success":
        return False
    return any(not math.isnan(float(sample["value"][1])) for sample in answer["data"]["result"])


@pytest.mark.e2e
async def test_every_panel_returns_data_from_a_real_prometheus_scraping_a_real_node(
    prometheus_tools: PrometheusTools,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Every target, its variables filled as Grafana does, must be valid and return a
    number."""
    redis_server.flush()
    node = start_node(redis_server.url, "node-dash")
    address = node.url.removeprefix("http://")
    prometheus = PrometheusServer(
        prometheus_tools,
        tmp_path / "prometheus",
        targets=[address],
        rule_files=[DEPLOY / "prometheus" / "recording.yml", DEPLOY / "prometheus" / "alerts.yml"],
    ).start()
    try:
        await eventually(
            lambda: prometheus.query('up{job="fieldpush"} == 1'),
            until=has_data,
            message="prometheus scraped the node before the load",
            timeout=15,
        )
        await load(node)
        document = dashboard()
        # The node variable, as Grafana fills it.
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            values = await http.get(
                prometheus.url + "/api/v1/label/instance/values",
                params={"match[]": "fieldpush_build_info"},
            )
        assert values.json()["data"] == [address], values.text
        wanted = {
            (title, substitute(expression, address)) for title, expression in targets(document)
        }
        answers: dict[tuple[str, str], dict[str, Any]] = {}

        def enough(key: tuple[str, str]) -> bool:
            return has_data(answers.get(key, {}))

        async def missing() -> list[str]:
            for key in wanted:
                if not enough(key):
                    answers[key] = await prometheus.query(key[1])
            left = [key for key in sorted(wanted) if not enough(key)]
            return [
                f"{title}: {expression} -> {answers[title, expression]}\n"
                for title, expression in left
            ]

        await eventually(
            missing,
            until=lambda left: not left,
            message="every panel target returns data",
            timeout=20,
            interval=0.5,
        )
        await rules_run_on_the_nodes_series(prometheus)
    finally:
        prometheus.stop()
        assert node.stop() == 0, node.output


async def rules_run_on_the_nodes_series(prometheus: PrometheusServer) -> None:
    """The real Prometheus evaluates every rule of recording.yml and alerts.yml
    without an error, and every series they read is one the node exposes."""
    async with httpx.AsyncClient(timeout=scaled(10)) as http:
        groups = (await http.get(prometheus.url + "/api/v1/rules")).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 10, rules
    for rule in rules:
        assert rule["health"] == "ok", rule
    answer = await prometheus.query('group by (__name__) ({__name__=~"fieldpush_.+"})')
    exposed = {sample["metric"]["__name__"] for sample in answer["data"]["result"]}
    read = set()
    for name in ("recording.yml", "alerts.yml"):
        read |= set(re.findall(r"\bfieldpush_\w+", (DEPLOY / "prometheus" / name).read_text()))
    assert read <= exposed, f"the rules read series the node does not expose: {read - exposed}"
