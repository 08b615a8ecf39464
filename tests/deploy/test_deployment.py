"""deploy/: the Dockerfile, the compose file and the systemd unit, tested as far as
this machine allows (no container engine: images are not built here).

- The Dockerfile's ENTRYPOINT + CMD are started as the real ``fieldpush serve`` the
  e2e tests run, and its HEALTHCHECK command is run against that node.
- The compose file: ``docker compose config`` where ``docker compose version`` works;
  where the compose plugin is absent (this machine has only the docker client and
  Debian ships no compose v2 package) the same assertions run on the file as PyYAML
  reads it (``x-node`` merged), which the test's output says.
- The unit: ``systemd-analyze verify``, with ExecStart pointed at this venv's command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fieldpush.http.health import health_routes
from tests.support.cli import ServeProcess, fieldpush_command, run
from tests.support.prometheus import PrometheusTools
from tests.support.redis_server import RedisServer
from tests.support.timing import scaled

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET = "s" * 40  # a non-development secret of 32 bytes or more, as compose requires

# ------------------------------------------------------------------------ Dockerfile


def dockerfile() -> dict[str, list[str]]:
    """The Dockerfile's instructions (continuations joined): name -> arguments, in order."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            found.setdefault(name.upper(), []).append(rest.strip())
    return found


def exec_form(value: str) -> list[str]:
    """An instruction's JSON (exec) form; the shell form is refused (no signals)."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), value
    return parsed


def healthcheck_command() -> list[str]:
    (healthcheck,) = dockerfile()["HEALTHCHECK"]
    _, _, command = healthcheck.partition("CMD ")
    return exec_form(command)


def serve_args(arguments: list[str], redis_url: str | None = None) -> list[str]:
    """``fieldpush serve`` arguments with the port made 0 (any free one) and the
    compose Redis replaced by the test's."""
    previous = ["", *arguments[:-1]]
    out = [
        "0" if flag == "--port" else part for flag, part in zip(previous, arguments, strict=True)
    ]
    if redis_url is not None:
        out = [redis_url if part == "redis://redis:6379/0" else part for part in out]
    return out


def run_healthcheck(port: str) -> subprocess.CompletedProcess[str]:
    command = [
        part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in healthcheck_command()
    ]
    assert command[0] == "python"
    return subprocess.run(
        [sys.executable, *command[1:]],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
    )


def test_the_image_is_python_3_11_slim_non_root_with_a_readyz_healthcheck() -> None:
    instructions = dockerfile()
    assert instructions["FROM"] == ["python:3.11-slim"]
    users = instructions["USER"]
    assert users and users[-1] not in {"root", "0"}, users
    assert "/readyz" in " ".join(healthcheck_command())
    assert "/readyz" in {route.path for route in health_routes}  # type: ignore[attr-defined]
    assert instructions["EXPOSE"] == ["8080"]
    # The shell form would run under /bin/sh, which does not pass SIGTERM on.
    assert exec_form(instructions["ENTRYPOINT"][-1]) == ["fieldpush", "serve"]


def test_the_entrypoint_is_the_fieldpush_serve_of_the_tests_and_the_healthcheck_passes() -> None:
    """ENTRYPOINT + CMD as the e2e tests start a node (tests/support/cli.py, with
    the port 0 for a free one), with the secret the image needs off loopback; the
    HEALTHCHECK command, pointed at that port, exits 0."""
    entrypoint = exec_form(dockerfile()["ENTRYPOINT"][-1])
    assert entrypoint[0] == Path(fieldpush_command()[0]).name  # the console script
    assert entrypoint[1] == "serve"  # ServeProcess runs `fieldpush serve ARGS`
    cmd = exec_form(dockerfile()["CMD"][-1])
    node = ServeProcess(*serve_args(cmd), env={"FIELDPUSH_JWT_SECRET": SECRET}).start()
    try:
        assert node.url.startswith("http://0.0.0.0:"), node.url
        port = node.url.rsplit(":", 1)[1]
        checked = run_healthcheck(port)
        assert checked.returncode == 0, checked.stderr
    finally:
        assert node.stop() == 0, node.output
    refused = run_healthcheck(port)  # the same check on a port nobody serves fails
    assert refused.returncode != 0


def test_the_image_refuses_the_development_secret() -> None:
    """Without FIELDPUSH_JWT_SECRET (compose and the unit require one) the node
    does not start on 0.0.0.0."""
    cmd = exec_form(dockerfile()["CMD"][-1])
    env = {key: value for key, value in os.environ.items() if key != "FIELDPUSH_JWT_SECRET"}
    done = subprocess.run(
        [*fieldpush_command(), "serve", *serve_args(cmd)],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        env=env,
        check=False,
    )
    assert done.returncode != 0
    assert "development JWT secret" in done.stdout + done.stderr


# --------------------------------------------------------------------------- compose


def compose_document() -> tuple[dict[str, Any], str]:
    """The compose file as ``docker compose config`` resolves it, else as PyYAML
    reads it; and which of the two it is."""
    docker = shutil.which("docker")
    env = {**os.environ, "FIELDPUSH_JWT_SECRET": SECRET}
    if docker is not None:
        version = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0:
            done = subprocess.run(
                [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config"],
                capture_output=True,
                text=True,
                env=env,
                timeout=scaled(60),
                check=False,
            )
            assert done.returncode == 0, done.stderr
            resolved: dict[str, Any] = yaml.safe_load(done.stdout)
            return resolved, "docker compose config"
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document, "PyYAML (no `docker compose` plugin here)"


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """target -> source of a service's bind mounts (short or long syntax), the
    sources resolved against deploy/ (a volume name is no bind mount)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            if volume["type"] != "bind":
                continue
            source, target = volume["source"], volume["target"]
        if source.startswith(("/", ".")):
            mounts[target] = (DEPLOY / source).resolve()
    return mounts


def test_compose_has_redis_two_nodes_prometheus_and_grafana_with_files_that_exist(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked by ``docker compose config`` where the plugin exists, else by PyYAML."""
    document, how = compose_document()
    with capsys.disabled():
        print(f"\ncompose file checked with {how}")
    services = document["services"]
    assert set(services) == {"redis", "node-a", "node-b", "prometheus", "grafana"}
    for name in ("node-a", "node-b"):
        node = services[name]
        build = node["build"]
        dockerfile_path = (DEPLOY / build["context"]).resolve() / build["dockerfile"]
        assert dockerfile_path == DEPLOY / "Dockerfile"
        assert "FIELDPUSH_JWT_SECRET" in node["environment"]
        assert node["command"][node["command"].index("--node-id") + 1] == name
        assert "redis://redis:6379/0" in node["command"]
    for service in services.values():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{target}: {source} does not exist"
    prometheus = bind_mounts(services["prometheus"])
    config = yaml.safe_load(prometheus["/etc/prometheus/prometheus.yml"].read_text())
    rule_targets = {target: source.name for target, source in prometheus.items()}
    assert [rule_targets[path] for path in config["rule_files"]] == ["recording.yml", "alerts.yml"]
    (job,) = config["scrape_configs"]
    # alerts.yml's FieldpushNodeDown reads up{job="fieldpush"}.
    assert job["job_name"] == "fieldpush"
    scraped = [
        f"{name}:{services[name]['environment']['FIELDPUSH_METRICS_PORT']}"
        for name in ("node-a", "node-b")
    ]
    assert job["static_configs"][0]["targets"] == scraped
    grafana = bind_mounts(services["grafana"])
    dashboards = grafana["/etc/grafana/provisioning"] / "dashboards" / "fieldpush.yml"
    (provider,) = yaml.safe_load(dashboards.read_text())["providers"]
    dashboard_target = Path(provider["options"]["path"]) / "fieldpush.json"
    assert grafana[str(dashboard_target)] == DEPLOY / "grafana" / "fieldpush.json"
    sources = grafana["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml"
    (datasource,) = yaml.safe_load(sources.read_text())["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")


def test_the_compose_nodes_start_as_written_on_redis(redis_server: RedisServer) -> None:
    """Each node's ENTRYPOINT + compose command and environment, on the test's Redis
    and free ports: /metrics is on the metrics listener only (the API port: 404)."""
    document, _ = compose_document()
    entrypoint = exec_form(dockerfile()["ENTRYPOINT"][-1])
    assert entrypoint == ["fieldpush", "serve"]
    nodes = []
    try:
        for name in ("node-a", "node-b"):
            service = document["services"][name]
            env = {**service["environment"], "FIELDPUSH_JWT_SECRET": SECRET}
            env["FIELDPUSH_METRICS_PORT"] = "0"
            command = serve_args(service["command"], redis_server.url)
            nodes.append(ServeProcess(*command, env=env).start())
        for node in nodes:
            assert "backend redis" in node.output, node.output
            found = re.search(r"metrics on (http://\S+/metrics)", node.output)
            assert found is not None, node.output
            metrics = httpx.get(found.group(1), timeout=scaled(10))
            assert metrics.status_code == 200 and "fieldpush_build_info" in metrics.text
            assert httpx.get(node.url + "/metrics", timeout=scaled(10)).status_code == 404
    finally:
        assert [node.stop() for node in nodes] == [0] * len(nodes)


def test_promtool_check_config_passes_on_the_compose_prometheus(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    """deploy/prometheus/prometheus.yml, its rule paths pointed at deploy/prometheus."""
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert text.count("/etc/prometheus/") == 2
    (tmp_path / "prometheus.yml").write_text(
        text.replace("/etc/prometheus/", str(DEPLOY / "prometheus") + "/")
    )
    done = subprocess.run(
        [prometheus_tools.promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout and "SUCCESS: 7 rules found" in done.stdout


# --------------------------------------------------------------------------- systemd


def unit_exec_start() -> list[str]:
    (line,) = [
        line
        for line in (DEPLOY / "systemd" / "fieldpush.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    ]
    return shlex.split(line.removeprefix("ExecStart="))


def test_systemd_analyze_verify_passes_on_the_unit(tmp_path: Path) -> None:
    """With ExecStart's /opt/fieldpush/bin/fieldpush (where the unit's install puts
    it) replaced by this venv's command, which verify checks is executable."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: apt-get install -y systemd"
    command = unit_exec_start()
    assert command[0] == "/opt/fieldpush/bin/fieldpush"
    text = (DEPLOY / "systemd" / "fieldpush.service").read_text()
    unit = tmp_path / "fieldpush.service"
    unit.write_text(text.replace(command[0], fieldpush_command()[0]))
    done = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_units_command_is_fieldpush_serve_with_options_it_knows() -> None:
    command = unit_exec_start()
    assert Path(command[0]).name == "fieldpush" and command[1] == "serve"
    usage = run("serve", "--help")
    assert usage.returncode == 0, usage.stderr
    for option in command[2:]:
        if option.startswith("--"):
            assert option in usage.stdout, f"fieldpush serve has no {option}"


def test_the_image_copies_what_pip_install_needs() -> None:
    """The Dockerfile's COPY sources and the allow-list of its .dockerignore hold
    pyproject.toml, its readme and the package directories it finds."""
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *project["tool"]["setuptools"]["packages"]["find"]["where"],
    }
    copied = {
        source.rstrip("/")
        for line in dockerfile()["COPY"]
        for source in line.split()[:-1]
        if not source.startswith("--")
    }
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert needed <= allowed, f"ignored by Dockerfile.dockerignore: {needed - allowed}"
