"""``python -m bench``: fieldpush against the baseline, same run, same machine.

Starts a redis-server and, for every scenario, a fresh server process of each
kind pinned to one core (the load generator and Redis share the other), runs
the scenario from this process, and prints each figure with its ratio to the
baseline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.dispatch import HttpPublisher, Publisher, RedisPublisher
from bench.procstat import loop_name, raise_open_files, run
from server.auth import mint_token
from server.settings import Settings
from tests.support.redis_server import free_port, server_binary

SERVER_CORE = 0
LOAD_CORE = 1


class Server:
    """A server process pinned to the server core, stopped on exit."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log.open("w")
        # The child inherits this process's raised open-files limit.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        os.sched_setaffinity(self.process.pid, {SERVER_CORE})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not found:
            self.stop()
            raise SystemExit(f"bench: server did not start: {line!r}; see {log}")
        self.host, self.port = found.group(1), int(found.group(2))

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
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


def start_server(kind: str, redis_url: str, logs: Path, args: argparse.Namespace) -> Server:
    if kind == "baseline":
        command = [sys.executable, "-m", "bench.baseline", str(free_port()), redis_url]
    else:
        command = [
            sys.executable, "-m", "server.cli", "serve",
            "--port", str(free_port()), "--redis-url", redis_url, "--node-id", "bench",
            "--log-level", args.server_log_level,
        ]  # fmt: skip
    return Server(command, logs / f"{kind}-{time.monotonic_ns()}.log")


def flush(redis_url: str) -> None:
    host, port = redis_url.split("//")[1].split("/", maxsplit=1)[0].split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        sock.recv(64)


async def measure(
    kind: str, scenario: str, server: Server, redis_url: str, args: argparse.Namespace
) -> dict[str, Any]:
    settings = Settings()
    dispatcher = mint_token(settings, user="dispatcher", role="dispatcher", ttl_s=3600)

    async def publisher() -> Publisher:
        if kind == "baseline":
            return RedisPublisher(redis_url)
        return await HttpPublisher.open(server.host, server.port, dispatcher)

    target = scenarios.Target(kind, server.host, server.port, server.pid, publisher)
    phones = args.idle_phones if scenario == "idle" else args.phones
    channels = [f"team:t{i % args.channels}" for i in range(phones)]
    tokens = [
        mint_token(
            settings, user=f"u{i}", role="sales", teams=[f"t{i % args.channels}"], ttl_s=3600
        )
        for i in range(phones)
    ]
    if scenario == "idle":
        return await scenarios.idle(target, tokens, channels)
    if scenario in ("steady", "stalled"):
        stalled_every = round(1 / args.stalled_fraction) if scenario == "stalled" else 0
        return await scenarios.steady(
            target,
            tokens,
            channels,
            rate=args.rate,
            duration_s=args.duration,
            stalled_every=stalled_every,
        )
    return await scenarios.burst(
        target, tokens, channels, count=args.burst, dispatchers=args.dispatchers
    )


#: (figure, higher is better, target ratio to the baseline or None)
FIGURES = {
    "steady": [
        ("delivered", True, None),
        ("expected", True, None),
        ("deliveries_per_cpu_s", True, 0.9),
        ("p50_ms", False, None),
        ("p99_ms", False, None),
        ("max_ms", False, None),
        ("server_cpu_s", False, None),
    ],
    "stalled": [
        ("delivered", True, None),
        ("expected", True, None),
        ("deliveries_per_cpu_s", True, None),
        ("p50_ms", False, None),
        ("p99_ms", False, None),
        ("max_ms", False, None),
    ],
    "burst": [
        ("delivered", True, None),
        ("expected", True, None),
        ("deliveries_per_s", True, 1.0),
        ("elapsed_s", False, None),
        ("publish_s", False, None),
        ("p99_ms", False, None),
        ("server_cpu_s", False, None),
    ],
    "idle": [
        ("phones", True, None),
        ("kib_per_connection", False, 1.3),
        ("handshakes_per_s", True, 0.9),
        ("server_cpu_per_handshake_us", False, None),
    ],
}


def report(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = []
    if "steady" in results and "stalled" in results:
        ours = results["stalled"]["fieldpush"]["p99_ms"] / results["steady"]["fieldpush"]["p99_ms"]
        lines.append(
            f"\nfieldpush p99 of healthy phones with stalled ones / without: {ours:.2f}"
            "  (issue 3 target <= 1.2)"
        )
    for scenario, kinds in results.items():
        lines.append(f"\n{scenario}")
        lines.append(f"  {'figure':<30}{'baseline':>12}{'fieldpush':>12}{'ratio':>8}  target")
        for name, higher, goal in FIGURES[scenario]:
            base, ours = kinds["baseline"][name], kinds["fieldpush"][name]
            ratio = ours / base if base else float("nan")
            verdict = ""
            if goal is not None:
                met = ratio >= goal if higher else ratio <= goal
                verdict = f"{'>=' if higher else '<='} {goal}x  {'met' if met else 'MISSED'}"
            lines.append(f"  {name:<30}{base:>12.2f}{ours:>12.2f}{ratio:>8.2f}  {verdict}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario", choices=["steady", "burst", "idle", "stalled", "all"], default="all"
    )
    parser.add_argument(
        "--stalled-fraction",
        type=float,
        default=0.05,
        help="share of phones that never read in the stalled scenario (steady otherwise)",
    )
    parser.add_argument("--phones", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100, help="publishes per second (steady)")
    parser.add_argument("--duration", type=float, default=15, help="seconds (steady)")
    parser.add_argument("--burst", type=int, default=1000, help="publishes (burst)")
    parser.add_argument("--dispatchers", type=int, default=32, help="concurrent publishers (burst)")
    parser.add_argument("--idle-phones", type=int, default=5000)
    parser.add_argument(
        "--server-log-level", default="info", help="fieldpush's log level (default info)"
    )
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.phones, args.idle_phones, args.duration, args.burst = 200, 500, 3, 200
    if os.cpu_count() is not None and (os.cpu_count() or 0) < 2:
        raise SystemExit("bench: needs two cores (server on one, load on the other)")
    os.sched_setaffinity(0, {LOAD_CORE})
    raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="fieldpush-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            server_binary(),
            "--port",
            str(redis_port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    os.sched_setaffinity(redis.pid, {LOAD_CORE})
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    time.sleep(0.5)
    everything = ["idle", "steady", "stalled", "burst"]
    chosen = everything if args.scenario == "all" else [args.scenario]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    print(f"fieldpush bench: loop {loop_name()}, server on core {SERVER_CORE}, load on {LOAD_CORE}")
    try:
        for scenario in chosen:
            results[scenario] = {}
            for kind in ("baseline", "fieldpush"):
                flush(redis_url)
                server = start_server(kind, redis_url, work, args)
                try:
                    results[scenario][kind] = run(measure(kind, scenario, server, redis_url, args))
                finally:
                    server.stop()
                print(f"  {scenario} {kind}: {json.dumps(results[scenario][kind])}", flush=True)
    finally:
        redis.terminate()
        redis.wait()
    print(report(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
