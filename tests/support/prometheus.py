"""Debian's ``prometheus`` package for the deploy tests: ``promtool`` and the
``prometheus`` server binary.

:func:`prometheus_tools` (a session-scoped fixture: the tests of ``tests/deploy``
import it into their conftest) finds both binaries on PATH, or installs the
package once per run with ``apt-get install -y prometheus`` when running as root
(CI does). Where neither works the tests fail with the command to run: they
never skip. When the binaries are present it costs two ``shutil.which`` calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.support.timing import scaled

__all__ = ["INSTALL_COMMAND", "PrometheusTools", "find_tools", "prometheus_tools"]

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
