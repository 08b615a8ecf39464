"""``python -m bench``: fieldpush against the baseline, in the same run, on the same machine.

Starts one redis-server and, for every scenario and server, a fresh server
process pinned to core 0 (this load generator and redis-server share core 1),
runs the scenario from this process and prints each figure with its ratio to
the baseline and the issue's target. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import profile, report, scenarios
from bench.dispatch import HttpPublisher, Publisher, RedisPublisher
from bench.procstat import LOOPS, default_loop, loaded_uvloop, raise_open_files, run
from bench.servers import Redis, Server, server_command

SERVER_CORE = 0
LOAD_CORE = 1
ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("idle", "steady", "burst", "stalled", "dispatch")
KINDS = ("baseline", "fieldpush")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help="all = idle, steady, burst, stalled (default all)",
    )
    add("--phones", type=int, default=2000, help="phones for steady, burst, stalled (2000)")
    add("--channels", type=int, default=20, help="team channels, phones spread evenly (20)")
    add("--rate", type=float, default=100, help="publishes per second in steady (100)")
    add("--duration", type=float, default=15, help="seconds of steady publishing (15)")
    add("--burst", type=int, default=1000, help="publishes in the burst (1000)")
    add(
        "--dispatchers",
        type=int,
        default=32,
        help="concurrent publisher connections in the burst (32)",
    )
    add("--idle-phones", type=int, default=5000, help="phones in the idle test (5000)")
    add("--handshake-concurrency", type=int, default=50, help="handshakes in flight (50)")
    add(
        "--stalled-fraction",
        type=float,
        default=0.05,
        help="share of phones that never read in the stalled scenario (0.05)",
    )
    add(
        "--critical-fraction",
        type=float,
        default=0.01,
        help="share of critical (acked) events in the dispatch scenario (0.01)",
    )
    add(
        "--loop",
        choices=LOOPS,
        default=default_loop(),
        help="event loop of both servers (default uvloop when importable)",
    )
    add(
        "--repeat",
        type=int,
        default=1,
        help="run each scenario this many times per server, alternating the order (1)",
    )
    add("--server-log-level", default="warning", help="fieldpush's --log-level (warning)")
    add(
        "--quick",
        action="store_true",
        help="a smoke test: 200 phones, 500 idle, 3 s steady, 200 publishes in the burst",
    )
    add("--json", type=Path, metavar="PATH", help="also write the raw results here")
    add(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record a py-spy profile of each server in each measured window into DIR "
        "(costs the load core CPU: not for the record)",
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.phones, args.idle_phones, args.duration, args.burst = 200, 500, 3, 200
    if args.phones < args.channels or args.repeat < 1:
        parser.error("need --phones >= --channels and --repeat >= 1")
    return args


def make_phones(settings: Any, count: int, channels: int) -> scenarios.Phones:
    """Phone i is user u<i> in team t<i % channels>, subscribed to team:t<i % channels>."""
    from fieldpush.identity.auth import mint_token

    teams = [f"t{i % channels}" for i in range(count)]
    tokens = [
        mint_token(settings, user=f"u{i}", role="sales", teams=[team], ttl_s=3600)
        for i, team in enumerate(teams)
    ]
    return scenarios.Phones(tokens, [f"team:{team}" for team in teams])


def measure(
    kind: str, scenario: str, server: Server, redis: Redis, args: argparse.Namespace
) -> dict[str, Any]:
    """One scenario against one running server, on this process's event loop."""
    from fieldpush.identity.auth import mint_token
    from fieldpush.settings import load_settings

    settings = load_settings(environ={})
    dispatcher = mint_token(settings, user="dispatcher", role="dispatcher", ttl_s=3600)

    async def publisher() -> Publisher:
        if kind == "baseline":
            return await RedisPublisher.open("127.0.0.1", redis.port)
        return await HttpPublisher.open(server.host, server.port, dispatcher)

    profiler = None
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        profiler = profile.PySpy(server.pid, args.py_spy / f"{scenario}-{kind}.txt")
    target = scenarios.Target(
        kind, server.host, server.port, server.pid, redis.pid, publisher,
        handshake_concurrency=args.handshake_concurrency, profiler=profiler,
    )  # fmt: skip
    count = args.idle_phones if scenario == "idle" else args.phones
    phones = make_phones(settings, count, args.channels)
    if scenario == "idle":
        return run(scenarios.idle(target, phones))  # type: ignore[no-any-return]
    if scenario == "burst":
        return run(  # type: ignore[no-any-return]
            scenarios.burst(target, phones, count=args.burst, dispatchers=args.dispatchers)
        )
    stalled = scenario in ("stalled", "dispatch")
    stalled_every = round(1 / args.stalled_fraction) if stalled else 0
    critical_every = round(1 / args.critical_fraction) if scenario == "dispatch" else 0
    return run(  # type: ignore[no-any-return]
        scenarios.steady(
            target,
            phones,
            rate=args.rate,
            duration_s=args.duration,
            stalled_every=stalled_every,
            critical_every=critical_every,
        )
    )


def start(kind: str, redis: Redis, logs: Path, args: argparse.Namespace) -> Server:
    """A fresh server of ``kind``, checked to run on the requested loop and core."""
    command = server_command(kind, args.loop, SERVER_CORE, redis.url, args.server_log_level)
    server = Server(command, logs / f"{kind}-{time.monotonic_ns()}.log")
    on_uvloop = loaded_uvloop(server.pid)
    if on_uvloop != (args.loop == "uvloop") or os.sched_getaffinity(server.pid) != {SERVER_CORE}:
        server.stop()
        raise SystemExit(f"bench: {kind} is not on {args.loop} and core {SERVER_CORE}")
    return server


def environment(args: argparse.Namespace, redis: Redis) -> dict[str, Any]:
    version = subprocess.run(
        [redis.binary, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
        check=False,
    ).stdout.strip()  # fmt: skip
    import websockets

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loop": args.loop,
        "websockets": websockets.__version__,
        "redis": version,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench: needs two cores (the server on one, the load on the other)")
    os.chdir(ROOT)  # fieldpush reads config/fieldpush.toml relative to here
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]  # defaults and the config file only, for both sides
    os.sched_setaffinity(0, {LOAD_CORE})
    raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="fieldpush-bench-"))
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    redis = Redis(LOAD_CORE, work)
    env = environment(args, redis)
    print(
        f"fieldpush bench: {args.loop} for both servers, server on core {SERVER_CORE}, "
        f"load generator and {Path(redis.binary).name} on core {LOAD_CORE}; logs in {work}",
        flush=True,
    )
    try:
        for scenario in chosen:
            results[scenario] = {kind: [] for kind in KINDS}
            for repeat in range(args.repeat):
                for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
                    redis.flush()
                    server = start(kind, redis, work, args)
                    try:
                        result = measure(kind, scenario, server, redis, args)
                    finally:
                        server.stop()
                    results[scenario][kind].append(result)
                    shown = {k: round(v, 3) if isinstance(v, float) else v
                             for k, v in result.items()}  # fmt: skip
                    print(f"  {scenario} {kind}: {json.dumps(shown)}", flush=True)
    finally:
        redis.stop()
    env["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    summary = {s: report.summarise(s, runs) for s, runs in results.items()}
    for scenario, rows in summary.items():
        print()
        print(report.table(title(scenario, args), rows, report.noisy_runs(results[scenario])))
    if note := report.stalled_note(summary):
        print(f"\n{note}")
    if args.py_spy:
        for raw in sorted(args.py_spy.glob("*.txt")):
            print()
            print(profile.summarise(raw))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {"args": vars(args) | {"json": str(args.json)}, "environment": env,
               "summary": summary, "runs": results}  # fmt: skip
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"\nraw results: {args.json}")


def title(scenario: str, args: argparse.Namespace) -> str:
    runs = f", {args.repeat} runs each (medians)" if args.repeat > 1 else ""
    phones = f"{args.phones} phones on {args.channels} channels"
    in_flight = args.handshake_concurrency
    return {
        "idle": f"idle: {args.idle_phones} phones, {in_flight} handshakes in flight",
        "steady": f"steady: {phones}, {args.rate:g} publishes/s for {args.duration:g} s",
        "burst": f"burst: {phones}, {args.burst} publishes over {args.dispatchers} connections",
        "stalled": f"stalled: steady with {args.stalled_fraction:.0%} of the phones never reading",
        "dispatch": f"dispatch: stalled, and {args.critical_fraction:.0%} of the events critical "
        "with acks (the baseline forwards them all alike)",
    }[scenario] + runs


if __name__ == "__main__":
    sys.exit(main())
