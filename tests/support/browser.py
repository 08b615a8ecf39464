"""Debian's headless Chromium driven by Playwright, for the console tests.

``chromium_binary()`` installs the ``chromium`` package when it is missing and
the run is root (CI), else fails with the command to run; the test never skips
and Playwright never downloads a browser. ``launch()`` starts it with a fresh
user-data directory. Screenshots go to ``$FIELDPUSH_TEST_ARTIFACTS`` (default
``tests/artifacts/``, gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, async_playwright

from tests.support.cli import ServeProcess
from tests.support.timing import scaled

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> Path:
    """/usr/bin/chromium, installed first when missing and possible."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"chromium is missing: run `{INSTALL}` as root")
    done = subprocess.run(
        INSTALL.split(), capture_output=True, text=True, timeout=scaled(600), check=False
    )
    if done.returncode != 0 or not CHROMIUM.exists():
        raise RuntimeError(f"`{INSTALL}` failed:\n{done.stdout}\n{done.stderr}")
    return CHROMIUM


def artifacts_dir() -> Path:
    """Where screenshots are kept (created)."""
    default = Path(__file__).resolve().parents[1] / "artifacts"
    path = Path(os.environ.get("FIELDPUSH_TEST_ARTIFACTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


@asynccontextmanager
async def launch(binary: Path) -> AsyncIterator[BrowserContext]:
    """A browser context of a fresh Chromium (own user-data directory)."""
    with tempfile.TemporaryDirectory(prefix="fp-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(binary),
                args=ARGS,
                headless=True,
                viewport={"width": 1024, "height": 900},
            )
            try:
                yield context
            finally:
                await context.close()


def free_port() -> int:
    """A port free a moment ago (a node restarted on the same address)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def console_node(redis_url: str, name: str, port: int, **settings: str) -> ServeProcess:
    """``fieldpush serve`` on ``port``, with no origin allowed: its own page
    at ``/console`` may open the socket all the same (docs/security.md)."""
    env = {
        "FIELDPUSH_ACCESS_LOG": "false",
        **{f"FIELDPUSH_{key.upper()}": value for key, value in settings.items()},
    }
    args = ("--port", str(port), "--redis-url", redis_url, "--node-id", name)
    return ServeProcess(*args, env=env).start()
