"""``python -m bench.uploads``: tus uploads against one node.

``--measure throughput`` (the default): one redis-server and one ``fieldpush
serve`` node with ``files_dir`` in a temporary directory. ``--uploads`` (50)
uploads of ``--size-mib`` (2) random MiB each, ``--concurrency`` (10) at a
time, each created by ``POST /v1/files/`` and sent in ``--chunk-kib`` (256)
KiB PATCHes with ``Upload-Checksum: sha256`` over its own keep-alive
connection (:mod:`bench.tus`). Every upload must end complete and stored under
its SHA-256. Reported: MiB/s of wall time, MiB per second of the server's CPU
time (user + system, from /proc), and, for scale, the CPU time this process
needs for the storage work alone (SHA-256 twice, write, fsync per chunk) on
the same bytes: the rest of the server's CPU is HTTP parsing, Starlette and
the event loop.

``--measure attachments``: issue 14's scenario, :mod:`bench.attachments`
(uploads cut and resumed while phones receive critical events).

Each of ``--repeat`` runs gets a fresh node and directory; every run prints
one JSON line, and a table of every run and the median ends the output.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import attachments
from bench.procstat import LOOPS, cpu_seconds
from bench.servers import one_node
from bench.tus import TusConnection, check_stored, photo, upload

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.uploads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--measure", choices=sorted(MEASURES), default="throughput")
    add("--uploads", type=int, default=50, help="throughput: uploads (50)")
    add("--size-mib", type=float, default=2.0, help="size of each upload (2)")
    add("--chunk-kib", type=int, default=256, help="bytes per PATCH (256 KiB)")
    add("--concurrency", type=int, default=None, help="uploads at a time (10; attachments 20)")
    add("--repeat", type=int, default=1, help="runs, each on a fresh node (1)")
    add("--json", type=Path, default=None, help="write every run's figures there")
    add("--loop", choices=LOOPS, default="asyncio", help="the node's event loop (asyncio)")
    attachments.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = 20 if args.measure == "attachments" else 10
    if args.repeat < 1 or args.concurrency < 1 or args.phones < args.channels:
        parser.error("need --repeat >= 1, --concurrency >= 1 and --phones >= --channels")
    return args


def storage_work_s(payloads: list[bytes], chunk: int, directory: Path) -> float:
    """CPU seconds of what the server must do with the bytes in any case."""
    started = time.process_time()
    for n, data in enumerate(payloads):
        whole = hashlib.sha256()
        fd = os.open(directory / f"work-{n}", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for offset in range(0, len(data), chunk):
                piece = data[offset : offset + chunk]
                hashlib.sha256(piece).digest()
                whole.update(piece)
                os.write(fd, piece)
                os.fsync(fd)
        finally:
            os.close(fd)
    return time.process_time() - started


async def throughput(
    host: str, port: int, pid: int, files: Path, args: argparse.Namespace
) -> dict[str, Any]:
    from fieldpush.identity.auth import mint_token
    from fieldpush.settings import load_settings

    settings = load_settings(environ={})
    size, chunk = int(args.size_mib * MIB), args.chunk_kib * 1024
    payloads = [photo(size) for _ in range(args.uploads)]
    tokens = [mint_token(settings, user=f"u{n % 20}", role="sales") for n in range(args.uploads)]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(n: int) -> None:
        async with gate:
            connection = TusConnection(host, port, tokens[n])
            try:
                await upload(connection, payloads[n], chunk)
            finally:
                connection.close()

    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(args.uploads)))
    wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    check_stored(files, payloads)
    work = storage_work_s(payloads, chunk, files)
    mib = args.uploads * size / MIB
    return {
        "uploads": args.uploads,
        "size_mib": args.size_mib,
        "chunk_kib": args.chunk_kib,
        "concurrency": args.concurrency,
        "wall_s": round(wall, 2),
        "server_cpu_s": round(cpu, 2),
        "mib_per_wall_s": round(mib / wall, 1),
        "mib_per_server_cpu_s": round(mib / cpu, 1),
        "storage_work_cpu_s": round(work, 2),
        "storage_share_of_server_cpu": round(work / cpu, 2),
    }


Measure = Callable[[str, int, int, Path, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
MEASURES: dict[str, Measure] = {"throughput": throughput, "attachments": attachments.measure}


def table(runs: list[dict[str, Any]]) -> str:
    """Every figure of every run, and the median over the runs."""
    width = max(len(key) for key in runs[0])
    header = "".join(f"{f'run {n + 1}':>12}" for n in range(len(runs)))
    lines = [f"  {'figure':<{width}}{header}{'median':>12}"]
    for key in runs[0]:
        values = [run[key] for run in runs]
        cells = "".join(f"{number(v):>12}" for v in values)
        lines.append(f"  {key:<{width}}{cells}{number(statistics.median(values)):>12}")
    return "\n".join(lines)


def number(value: float) -> str:
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{round(value):,}"
    return f"{value:.2f}"


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``args.measure`` on a fresh node and ``files_dir``."""
    with tempfile.TemporaryDirectory(prefix="fieldpush-uploads-") as directory:
        files = Path(directory) / "files"
        os.environ["FIELDPUSH_FILES_DIR"] = str(files)
        os.environ["FIELDPUSH_FILES_QUOTA_BYTES"] = str(1 << 40)
        with one_node(Path(directory), loop=args.loop) as server:
            measure = MEASURES[args.measure]
            return asyncio.run(measure(server.host, server.port, server.pid, files, args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]
    runs = []
    for _ in range(args.repeat):
        runs.append(run_once(args))
        print(json.dumps(runs[-1]), flush=True)
    print(
        f"\n{args.measure}: "
        + json.dumps({k: v for k, v in vars(args).items() if k != "json"}, default=str)
    )
    print(table(runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args), "runs": runs}, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
