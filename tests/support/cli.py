"""Run the real ``fieldpush`` command (the console script this venv installed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from tests.support.timing import scaled

_LISTENING = re.compile(r"listening on (https?://\S+)")


def fieldpush_command() -> list[str]:
    """The installed ``fieldpush`` script; fails with what to do when missing."""
    script = Path(sys.executable).parent / "fieldpush"
    if script.exists():
        return [str(script)]
    found = shutil.which("fieldpush")
    if found is None:
        raise RuntimeError("the fieldpush command is not installed: run pip install -e '.[test]'")
    return [found]


def run(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``fieldpush ARGS`` to completion."""
    return subprocess.run(
        [*fieldpush_command(), *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        env={**os.environ, **(env or {})},
        check=False,
    )


class ServeProcess:
    """``fieldpush serve`` as a subprocess; ``url`` once it listens.

    A thread drains its output into ``lines`` (so the process never blocks on a
    full pipe, and tests can read its log)."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.url = ""
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20) -> ServeProcess:
        self._listening.clear()
        self.process = subprocess.Popen(
            [*fieldpush_command(), "serve", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._drain, args=(self.process,), daemon=True)
        self._reader.start()
        if not self._listening.wait(scaled(timeout)):
            self.stop()
            raise RuntimeError("fieldpush serve did not start:\n" + self.output)
        return self

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found:
                self.url = found.group(1)
                self._listening.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/ws"  # http -> ws, https -> wss

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not exit in time. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._join()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: the node dies without any goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._join()

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(scaled(5))
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
