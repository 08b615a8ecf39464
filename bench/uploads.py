"""``python -m bench.uploads``: tus upload throughput per server CPU second.

One redis-server and one ``fieldpush serve`` node with ``files_dir`` in a
temporary directory. ``--uploads`` (50) uploads of ``--size-mib`` (2) random
MiB each, ``--concurrency`` (10) at a time, each created by ``POST
/v1/files/`` and sent in ``--chunk-kib`` (256) KiB PATCHes with
``Upload-Checksum: sha256``, over keep-alive connections. Every upload must
end complete and stored under its SHA-256. Reported: MiB/s of wall time, MiB
per second of the server's CPU time (user + system, from /proc), and, for
scale, the CPU time this process needs for the storage work alone (SHA-256
twice, write, fsync per chunk) on the same bytes: the rest of the server's
CPU is HTTP parsing, Starlette and the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import cpu_seconds
from bench.servers import one_node

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--size-mib", type=float, default=2.0)
    parser.add_argument("--chunk-kib", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=10)
    return parser.parse_args(argv)


def checksum(chunk: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(chunk).digest()).decode()


async def upload(http: httpx.AsyncClient, token: str, data: bytes, chunk: int) -> None:
    tus = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    created = await http.post("/v1/files/", headers={**tus, "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    for offset in range(0, len(data), chunk):
        piece = data[offset : offset + chunk]
        reply = await http.patch(
            url,
            content=piece,
            headers={
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": checksum(piece),
            },
        )
        assert reply.status_code == 204, reply.text
    assert reply.headers["upload-offset"] == str(len(data))


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


async def measure(url: str, pid: int, files: Path, args: argparse.Namespace) -> dict[str, Any]:
    from fieldpush.identity.auth import mint_token
    from fieldpush.settings import load_settings

    settings = load_settings(environ={})
    size, chunk = int(args.size_mib * MIB), args.chunk_kib * 1024
    payloads = [os.urandom(size) for _ in range(args.uploads)]
    tokens = [mint_token(settings, user=f"u{n % 20}", role="sales") for n in range(args.uploads)]
    gate = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:

        async def one(n: int) -> None:
            async with gate:
                await upload(http, tokens[n], payloads[n], chunk)

        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(args.uploads)))
        wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
    for data in payloads:
        digest = hashlib.sha256(data).hexdigest()
        assert (files / "sha256" / digest[:2] / digest[2:4] / digest).stat().st_size == size
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    for name in [n for n in os.environ if n.startswith("FIELDPUSH_")]:
        del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="fieldpush-uploads-") as directory:
        files = Path(directory) / "files"
        os.environ["FIELDPUSH_FILES_DIR"] = str(files)
        os.environ["FIELDPUSH_FILES_QUOTA_BYTES"] = str(1 << 40)
        with one_node(Path(directory)) as server:
            url = f"http://{server.host}:{server.port}"
            result = asyncio.run(measure(url, server.pid, files, args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
