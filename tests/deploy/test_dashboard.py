"""deploy/grafana/fieldpush.json: importable, templated by data source and node."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
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
    for name, value in BUILTINS.items():
        expression = expression.replace(name, value)
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
