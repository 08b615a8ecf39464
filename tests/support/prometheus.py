"""Debian's ``prometheus`` package for the deploy tests: ``promtool`` and the
``prometheus`` server binary, and :class:`PrometheusServer` to run the latter.

:func:`prometheus_tools` (a session-scoped fixture: the tests of ``tests/deploy``
import it into their conftest) finds both binaries on PATH, or installs the
package once per run with ``apt-get install -y prometheus`` when running as root
(CI does). Where neither works the tests fail with the command to run: they
never skip. When the binaries are present it costs two ``shutil.which`` calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.redis_server import free_port
from tests.support.timing import scaled

__all__ = [
    "INSTALL_COMMAND",
    "PrometheusServer",
    "PrometheusTools",
    "find_tools",
    "prometheus_tools",
]

#: What the setup runs (as root), and what a failure tells a developer to run.
INSTALL_COMMAND = ("apt-get", "install", "-y", "--no-install-recommends", "prometheus")


@dataclass(frozen=True)
class PrometheusTools:
    """Paths of the two binaries of Debian's ``prometheus`` package."""

    promtool: str
    prometheus: str


def find_tools() -> PrometheusTools | None:
    """Both binaries from PATH (``/usr/bin`` included), or None if one is missing."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/local/bin"])
    promtool = shutil.which("promtool", path=path)
    server = shutil.which("prometheus", path=path)
    if promtool is None or server is None:
        return None
    return PrometheusTools(promtool=promtool, prometheus=server)


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        capture_output=True,
        text=True,
        timeout=scaled(600),
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
    )


def install_tools() -> PrometheusTools:
    """The binaries, installing the package first if needed; raises with the
    install command where that is impossible (not root, no apt-get, apt fails)."""
    found = find_tools()
    if found is not None:
        return found
    wanted = "promtool and prometheus are missing: run `sudo " + " ".join(INSTALL_COMMAND) + "`"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(wanted + " (the tests install it themselves only as root)")
    done = _apt_get(*INSTALL_COMMAND[1:])
    if done.returncode != 0:  # a stale package list: refresh it once and retry
        _apt_get("update")
        done = _apt_get(*INSTALL_COMMAND[1:])
    found = find_tools()
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{wanted}; apt-get said:\n{done.stdout}\n{done.stderr}")
    return found


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """``promtool`` and ``prometheus``, installed once per run when missing."""
    try:
        return install_tools()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


class PrometheusServer:
    """A real Prometheus (Debian's binary) on a free loopback port, scraping
    ``targets`` (``host:port``, job ``fieldpush``) every ``scrape_s`` seconds and
    evaluating ``rule_files`` as often; its data in ``directory``. ``query`` is
    the HTTP API's ``/api/v1/query``. Every wait is bounded."""

    def __init__(
        self,
        tools: PrometheusTools,
        directory: Path,
        targets: list[str],
        rule_files: list[Path],
        scrape_s: float = 1.0,
    ) -> None:
        self.tools = tools
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {
                "scrape_interval": f"{scrape_s:g}s",
                "evaluation_interval": f"{scrape_s:g}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "fieldpush", "static_configs": [{"targets": targets}]}],
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        """Start it; return once ``/-/ready`` answers 200."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(json.dumps(self.config))  # JSON is YAML
        arguments = [
            self.tools.prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with (self.directory / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + scaled(20)
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("prometheus did not start:\n" + self.log)
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=scaled(2)).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")

    async def query(self, expression: str) -> dict[str, Any]:
        """The API's answer to an instant query now (status, data or error)."""
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            reply = await http.get(self.url + "/api/v1/query", params={"query": expression})
        answer: dict[str, Any] = reply.json()
        return answer

    def stop(self) -> None:
        """SIGTERM, wait; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(scaled(15))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
