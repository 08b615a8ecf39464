"""The rule files of deploy/prometheus pass ``promtool check rules``, and their
unit tests (deploy/prometheus/tests.yml: synthetic series, each alert firing and
silent) pass ``promtool test rules``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.prometheus import PrometheusTools
from tests.support.timing import scaled

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
OPERATIONS = RULES.parents[1] / "docs" / "operations.md"


def promtool(
    tools: PrometheusTools, *args: str, cwd: Path = RULES
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools.promtool, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=scaled(60),
        check=False,
    )


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((RULES / name).read_text())
    return document


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


def test_promtool_check_rules_passes_on_both_files(prometheus_tools: PrometheusTools) -> None:
    done = promtool(prometheus_tools, "check", "rules", "recording.yml", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout, done.stdout
    assert "SUCCESS: 7 rules found" in done.stdout, done.stdout


def test_promtool_unit_tests_pass(prometheus_tools: PrometheusTools) -> None:
    done = promtool(prometheus_tools, "test", "rules", "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_promtool_unit_tests_can_fail(prometheus_tools: PrometheusTools, tmp_path: Path) -> None:
    """The same tests on a copy whose sync threshold is 98 %: the firing case fails,
    so tests.yml does pin the thresholds."""
    for name in ("recording.yml", "tests.yml"):
        (tmp_path / name).write_text((RULES / name).read_text())
    alerts = (RULES / "alerts.yml").read_text()
    assert alerts.count("ratio_rate10m < 0.995") == 1
    (tmp_path / "alerts.yml").write_text(
        alerts.replace("ratio_rate10m < 0.995", "ratio_rate10m < 0.98")
    )
    done = subprocess.run(
        [prometheus_tools.promtool, "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=scaled(60),
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert "FieldpushSyncSuccessLow" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    tested = load("tests.yml")["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tested:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names == firing, f"alerts never seen firing in tests.yml: {names - firing}"
    assert names == silent, f"alerts never seen silent in tests.yml: {names - silent}"


def test_every_alert_has_severity_summary_description_and_a_runbook_that_exists() -> None:
    operations = OPERATIONS.read_text()
    anchors = {
        "#" + line.removeprefix("### ").strip().lower()
        for line in operations.splitlines()
        if line.startswith("### ")
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule
        page, _, anchor = annotations["runbook"].partition("#")
        assert page == "docs/operations.md", rule
        assert "#" + anchor in anchors, f"{rule['alert']}: no section for #{anchor}"


def test_the_recording_rules_are_the_contracts_names() -> None:
    recorded = {
        rule["record"] for group in load("recording.yml")["groups"] for rule in group["rules"]
    }
    assert recorded == {
        "fieldpush:sync_success:ratio_rate10m",
        "fieldpush:delivery_latency_seconds:p99_5m",
        "fieldpush:drift_records:increase1d",
    }
