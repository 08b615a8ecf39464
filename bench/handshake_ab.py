"""``python -m bench.handshake_ab``: this tree's handshake against another tree's, one run.

The idle scenario of ``python -m bench`` (connect ``--idle-phones`` phones,
``--handshake-concurrency`` handshakes in flight, then hold them 3 s), run
against fieldpush from two source trees **alternately in the same run**:
"before" (``--before``, a checkout whose ``server`` and ``client_sdk`` go on
the node's ``PYTHONPATH``) and "after" (the fieldpush this interpreter
imports). Each pair alternates which tree goes first. Both nodes get the same
tokens (minted by this tree: ``iat`` and ``jti``), the same redis-server
(flushed between runs), the same cores and the same loop, so the ratio
after / before of one pair compares the server code alone. Each node is
checked to run the intended tree: the before tree must answer
``GET /v1/admin/users/x`` with 404 when it has no admin API, the after tree
not (``--expect-before-admin`` when both have one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import scenarios
from bench.procstat import LOOPS, default_loop, loaded_uvloop, raise_open_files, run
from bench.servers import Redis, Server, pin_threads, server_command

SERVER_CORE, LOAD_CORE = 0, 1
ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("handshakes_per_s", "server_cpu_per_handshake_us", "kib_per_connection")


def start(tree: str, before: Path, redis: Redis, directory: Path, loop: str) -> Server:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if tree == "before":
        os.environ["PYTHONPATH"] = f"{before / 'server'}:{before / 'client_sdk'}"
    try:
        command = server_command("fieldpush", loop, SERVER_CORE, redis.url, "warning")
        server = Server(command, directory / f"{tree}-{time.monotonic_ns()}.log")
    finally:
        os.environ.clear()
        os.environ.update(env)
    if loaded_uvloop(server.pid) != (loop == "uvloop") or os.sched_getaffinity(server.pid) != {
        SERVER_CORE
    }:
        server.stop()
        raise SystemExit(f"bench.handshake_ab: {tree} is not on {loop} and core {SERVER_CORE}")
    return server


def check_tree(tree: str, server: Server, admin: str, expect_before_admin: bool) -> None:
    reply = httpx.get(
        f"http://{server.host}:{server.port}/v1/admin/users/x",
        headers={"Authorization": f"Bearer {admin}"},
    )
    has_admin = reply.status_code != 404
    if has_admin != (tree == "after" or expect_before_admin):
        server.stop()
        raise SystemExit(f"bench.handshake_ab: the {tree} node is not the {tree} tree "
                         f"(GET /v1/admin/users/x: {reply.status_code})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.handshake_ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--before", type=Path, required=True, help="the other tree's root")
    parser.add_argument("--pairs", type=int, default=5, help="before/after pairs (5)")
    parser.add_argument("--idle-phones", type=int, default=5000)
    parser.add_argument("--handshake-concurrency", type=int, default=50)
    parser.add_argument("--loop", choices=LOOPS, default=default_loop())
    parser.add_argument("--expect-before-admin", action="store_true")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    from fieldpush.identity.auth import mint_token
    from fieldpush.settings import Settings

    os.chdir(ROOT)
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]
    pin_threads(os.getpid(), LOAD_CORE)
    raise_open_files()
    settings = Settings()
    admin = mint_token(settings, user="bench-admin", role="admin", ttl_s=3600)
    teams = [f"t{i % 20}" for i in range(args.idle_phones)]
    phones = scenarios.Phones(
        [mint_token(settings, user=f"u{i}", role="sales", teams=[t], ttl_s=3600)
         for i, t in enumerate(teams)],
        [f"team:{t}" for t in teams],
    )  # fmt: skip
    results: list[dict[str, Any]] = []

    async def no_publisher() -> Any:
        raise RuntimeError("idle publishes nothing")

    with tempfile.TemporaryDirectory(prefix="fieldpush-ab-") as directory:
        redis = Redis(LOAD_CORE, Path(directory))
        try:
            for pair in range(args.pairs):
                order = ("before", "after") if pair % 2 == 0 else ("after", "before")
                for tree in order:
                    redis.flush()
                    server = start(tree, args.before, redis, Path(directory), args.loop)
                    try:
                        check_tree(tree, server, admin, args.expect_before_admin)
                        target = scenarios.Target(
                            tree, server.host, server.port, server.pid, redis.pid, no_publisher,
                            handshake_concurrency=args.handshake_concurrency,
                        )  # fmt: skip
                        result = run(scenarios.idle(target, phones))
                    finally:
                        server.stop()
                    result = {"pair": pair, "tree": tree, "at": time.strftime("%H:%M:%S")} | {
                        k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()
                    }
                    results.append(result)
                    print(json.dumps(result), flush=True)
        finally:
            redis.stop()
    print(f"\n{'figure':<30}{'before':>10}{'after':>10}{'after/before':>14}  per pair")
    for figure in FIGURES:
        by = {t: [r[figure] for r in results if r["tree"] == t] for t in ("before", "after")}
        ratios = [a / b for a, b in zip(by["after"], by["before"], strict=True)]
        line = f"{figure:<30}{statistics.median(by['before']):>10.1f}"
        line += f"{statistics.median(by['after']):>10.1f}{statistics.median(ratios):>14.3f}"
        print(f"{line}  {', '.join(f'{r:.2f}' for r in ratios)}")
    steal = max(r["steal_s"] for r in results)
    print(f"\nmedians of {args.pairs} pairs; most time stolen in one window: {steal:.2f} s")
    if args.json:
        shown = vars(args) | {"before": str(args.before), "json": str(args.json)}
        args.json.write_text(json.dumps({"args": shown, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
