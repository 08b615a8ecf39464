"""``python -m bench.revocation``: disable-to-closed latency across two nodes (issue 11).

One redis-server and two fieldpush nodes on it, node A and node B (both pinned
to core 0, or B on core 1 with ``--node-b-core 1``; redis-server and this load
generator on core 1, as in ``python -m bench``). Every one of ``--users``
users (100) holds one socket on each node (``hello`` with the user's token,
``welcome`` awaited). Then, one
user at a time (latency, not throughput), t0 = ``time.perf_counter()``, an
admin ``POST /v1/admin/users/{user}/disable`` goes to node A (one keep-alive
``httpx.AsyncClient``), and the time at which each of the user's two sockets
receives its close frame is recorded:

- **same node** (A): the node that stored the change applies it before it
  replies, so this close is written before the HTTP reply;
- **other node** (B): the change reaches B through Redis pub/sub.

Every close must carry code 4003 and every reply be 200; anything else (another
code, a socket lost without a close frame, no close within ``--timeout``) is
counted as an error and the run exits non-zero. ``--warmup`` users (2) go
first and are not counted. Reported per node: p50, p99 and max in ms from t0,
and the HTTP reply time p50 and p99. ``--runs`` starts fresh nodes (and a
flushed Redis) for each run and pools the samples; ``--json PATH`` writes
every sample.

Each sample also records how long the four processes involved (the two
nodes, redis-server, this load generator) waited on a run queue meanwhile
(``/proc/PID/task/*/schedstat``, second field: runnable but not running).
On this shared machine that names the usual cause of a slow sample: another
process held the core until the next scheduler tick (4 ms at ``HZ=250``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.phones import OP_CLOSE, Phone
from bench.procstat import LOOPS, default_loop, loaded_uvloop, raise_open_files, run, steal_seconds
from bench.servers import Redis, Server, pin_threads, server_command

SERVER_CORE, LOAD_CORE = 0, 1
ROOT = Path(__file__).resolve().parent.parent
NODES = ("A", "B")
FORBIDDEN = 4003


class ClosingPhone(Phone):
    """A phone that records when its close frame arrives (``time.perf_counter()``)."""

    def __init__(self, token: str, device: str, welcomed: asyncio.Future[None]) -> None:
        super().__init__(token, "team:t0", device, [], welcomed)
        self.closed: asyncio.Future[float] = welcomed.get_loop().create_future()

    def _frame(self, first: int, payload: bytes) -> None:
        if first & 0x0F == OP_CLOSE and not self.closed.done():
            self.closed.set_result(time.perf_counter())
        super()._frame(first, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_exception(ConnectionError(f"lost without a close frame: {exc}"))


@dataclass
class Samples:
    """Seconds from t0, per measured user; errors as text."""

    reply: list[float] = field(default_factory=list)
    closed: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NODES})
    errors: list[str] = field(default_factory=list)
    #: Run-queue wait of the nodes, redis-server and the load generator, by process.
    waited: list[dict[str, float]] = field(default_factory=list)


def run_queue_s(pid: int) -> float:
    """Seconds the threads of ``pid`` have waited on a run queue so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def run_queues(pids: dict[str, int]) -> dict[str, float]:
    return {name: run_queue_s(pid) for name, pid in pids.items()}


def token(settings: Any, user: str, role: str) -> str:
    from fieldpush.identity.auth import mint_token

    return mint_token(settings, user=user, role=role, teams=("t0",), ttl_s=3600)


async def connect(
    host: str, port: int, tokens: list[str], node: str, concurrency: int, timeout_s: float
) -> list[ClosingPhone]:
    """One phone per token on one node, ``concurrency`` handshakes in flight."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int, user_token: str) -> ClosingPhone:
        async with limit:
            welcomed: asyncio.Future[None] = loop.create_future()
            _, phone = await loop.create_connection(
                lambda: ClosingPhone(user_token, f"d{node}{index}", welcomed), host, port
            )
            await asyncio.wait_for(welcomed, timeout_s)
            return phone

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))))


async def measure(
    args: argparse.Namespace, servers: dict[str, Server], redis_pid: int, run_index: int
) -> tuple[Samples, dict[str, Any]]:
    from fieldpush.settings import Settings

    settings = Settings()
    admin = {"Authorization": f"Bearer {token(settings, 'bench-admin', 'admin')}"}
    total = args.warmup + args.users
    users = [f"r{run_index}u{i}" for i in range(total)]
    tokens = [token(settings, user, "sales") for user in users]
    phones = {
        node: await connect(server.host, server.port, tokens, node, args.concurrency, args.timeout)
        for node, server in servers.items()
    }
    samples = Samples()
    pids = {**{node: s.pid for node, s in servers.items()}, "redis": redis_pid, "load": os.getpid()}
    url = f"http://{servers['A'].host}:{servers['A'].port}"
    steal_start = steal_seconds()
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=args.timeout) as http:
            await http.get("/healthz")  # open the keep-alive connection
            for index, user in enumerate(users):
                measured = index >= args.warmup
                closed = {node: phones[node][index].closed for node in NODES}
                queued = run_queues(pids)
                t0 = time.perf_counter()
                reply = await http.post(f"/v1/admin/users/{user}/disable", headers=admin)
                replied = time.perf_counter()
                done, _ = await asyncio.wait(closed.values(), timeout=args.timeout)
                waited = {k: v - queued[k] for k, v in run_queues(pids).items()}
                problems = []
                if reply.status_code != 200:
                    problems.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
                for node, future in closed.items():
                    phone = phones[node][index]
                    if future not in done:
                        problems.append(f"node {node}: no close within {args.timeout:g} s")
                    elif future.exception() is not None:
                        problems.append(f"node {node}: {future.exception()}")
                    elif phone.close_code != FORBIDDEN:
                        problems.append(f"node {node}: close code {phone.close_code}")
                    elif measured:
                        samples.closed[node].append(future.result() - t0)
                if problems:
                    samples.errors.append(f"{user}: {'; '.join(problems)}")
                if measured:
                    samples.reply.append(replied - t0)
                    samples.waited.append(waited)
                if args.gap_ms:
                    await asyncio.sleep(args.gap_ms / 1000)
    finally:
        for node_phones in phones.values():
            for phone in node_phones:
                phone.close()
                if not phone.closed.done():
                    phone.closed.cancel()
                elif not phone.closed.cancelled():
                    phone.closed.exception()  # retrieved
    window = time.perf_counter() - started
    return samples, {
        "window_s": round(window, 3),
        "steal_s": round(steal_seconds() - steal_start, 3),
    }


def start_node(name: str, redis: Redis, directory: Path, args: argparse.Namespace) -> Server:
    core = args.node_b_core if name == "B" else SERVER_CORE
    command = server_command("fieldpush", args.loop, core, redis.url, args.server_log_level)
    command[command.index("--node-id") + 1] = f"bench-{name}"
    server = Server(command, directory / f"node-{name}-{time.monotonic_ns()}.log")
    on_uvloop = loaded_uvloop(server.pid)
    if on_uvloop != (args.loop == "uvloop") or os.sched_getaffinity(server.pid) != {core}:
        server.stop()
        raise SystemExit(f"bench.revocation: node {name} is not on {args.loop} and core {core}")
    return server


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile, in ms (as ``bench.scenarios.percentile``)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ms(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))])


def summary(samples: Samples) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for label, node in (("same_node", "A"), ("other_node", "B")):
        values = samples.closed[node]
        rows[label] = {
            "n": len(values),
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "max_ms": ms(max(values)) if values else float("nan"),
        }
    rows["http_reply"] = {
        "n": len(samples.reply),
        "p50_ms": percentile(samples.reply, 0.5),
        "p99_ms": percentile(samples.reply, 0.99),
        "max_ms": ms(max(samples.reply)) if samples.reply else float("nan"),
    }
    waits = [sum(w.values()) for w in samples.waited]
    rows["run_queue_wait"] = {
        "n": len(waits),
        "p50_ms": percentile(waits, 0.5),
        "p99_ms": percentile(waits, 0.99),
        "max_ms": ms(max(waits)) if waits else float("nan"),
    }
    # Slow samples: the other node's close more than 2 ms after its median.
    other = samples.closed["B"]
    if other and len(other) == len(waits):
        limit = sorted(other)[len(other) // 2] + 0.002
        slow = [i for i, value in enumerate(other) if value > limit]
        fast = [i for i in range(len(other)) if i not in slow]
        rows["slow_other_node"] = {
            "n": len(slow),
            "run_queue_wait_p50_ms": percentile([waits[i] for i in slow], 0.5),
            "others_run_queue_wait_p50_ms": percentile([waits[i] for i in fast], 0.5),
        }
    rows["errors"] = len(samples.errors)
    return rows


def table(title: str, rows: dict[str, Any]) -> str:
    lines = [
        title,
        "",
        "| from t0 (POST sent) to | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    names = {
        "same_node": "close frame, same node (A)",
        "other_node": "close frame, other node (B)",
        "http_reply": "HTTP reply from A",
        "run_queue_wait": "(run-queue wait meanwhile, 4 processes)",
    }
    for key, name in names.items():
        row = rows[key]
        lines.append(
            f"| {name} | {row['n']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    if (slow := rows.get("slow_other_node")) and slow["n"]:
        lines.append(
            f"\nslow samples (other node > its p50 + 2 ms): {slow['n']}, run-queue wait p50 "
            f"{slow['run_queue_wait_p50_ms']} ms (the other samples: "
            f"{slow['others_run_queue_wait_p50_ms']} ms)"
        )
    lines.append(f"\nerrors: {rows['errors']}")
    return "\n".join(lines)


def environment(args: argparse.Namespace, redis: Redis) -> dict[str, Any]:
    def out(command: list[str], cwd: Path | None = None) -> str:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)
        return done.stdout.strip()

    import fieldpush

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": out(["git", "rev-parse", "--short", "HEAD"], ROOT),
        "fieldpush": str(Path(fieldpush.__file__).parent),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loop": args.loop,
        "redis": out([redis.binary, "--version"]),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.revocation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--users", type=int, default=100, help="measured users, one socket per node each (100)")
    add("--warmup", type=int, default=2, help="users disabled first and not counted (2)")
    add("--runs", type=int, default=1, help="runs, each with fresh nodes; samples pooled (1)")
    add("--gap-ms", type=float, default=20, help="pause between two users' disables (20)")
    add("--timeout", type=float, default=10, help="seconds to wait for a close or reply (10)")
    add("--concurrency", type=int, default=50, help="handshakes in flight while connecting (50)")
    add(
        "--node-b-core",
        type=int,
        choices=(SERVER_CORE, LOAD_CORE),
        default=SERVER_CORE,
        help="node B's core (0: beside node A; 1: beside redis-server and the load generator)",
    )
    add("--loop", choices=LOOPS, default=default_loop(), help="the nodes' event loop")
    add("--server-log-level", default="warning", help="the nodes' --log-level (warning)")
    add("--json", type=Path, metavar="PATH", help="also write the summary and every sample")
    args = parser.parse_args(argv)
    if args.users < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("need --users >= 1, --runs >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench.revocation: needs two cores (nodes on one, the load on the other)")
    os.chdir(ROOT)  # fieldpush reads config/fieldpush.toml relative to here
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]
    pin_threads(os.getpid(), LOAD_CORE)
    raise_open_files()
    pooled = Samples()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fieldpush-revocation-") as directory:
        redis = Redis(LOAD_CORE, Path(directory))
        env = environment(args, redis)
        print(
            f"bench.revocation: node A on core {SERVER_CORE}, node B on core {args.node_b_core} "
            f"({args.loop}), this load "
            f"generator and {Path(redis.binary).name} on core {LOAD_CORE}; "
            f"{args.users} users (+{args.warmup} warm-up), {args.runs} run(s)",
            flush=True,
        )
        try:
            for run_index in range(args.runs):
                redis.flush()
                servers: dict[str, Server] = {}
                try:
                    for node in NODES:
                        servers[node] = start_node(node, redis, Path(directory), args)
                    samples, extra = run(measure(args, servers, redis.pid, run_index))
                finally:
                    for server in servers.values():
                        server.stop()
                pooled.reply += samples.reply
                for node in NODES:
                    pooled.closed[node] += samples.closed[node]
                pooled.errors += samples.errors
                pooled.waited += samples.waited
                result = {"run": run_index, **extra, **summary(samples)}
                raw = {"reply": samples.reply, **samples.closed, "run_queue": samples.waited}
                runs.append(result | {"samples_s": raw, "error_list": samples.errors})
                print(f"  run {run_index}: {json.dumps(result)}", flush=True)
        finally:
            redis.stop()
    env["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = summary(pooled)
    print()
    title = (
        f"disable-to-closed: {args.users} users x {args.runs} run(s), one socket on each of "
        f"two nodes, disable sent to A, node B on core {args.node_b_core}\n"
        f"({env['date']}, commit {env['commit']}, {env['loop']})"
    )
    print(table(title, rows))
    for error in pooled.errors[:20]:
        print(f"  error: {error}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        raw = {"args": vars(args) | {"json": str(args.json)}, "environment": env,
               "summary": rows, "runs": runs}  # fmt: skip
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
        print(f"\nraw results: {args.json}")
    return 1 if pooled.errors else 0


if __name__ == "__main__":
    sys.exit(main())
