"""``python -m bench.uploads --measure attachments``: issue 14's attachments scenario.

One node (``bench.servers.one_node``: fieldpush on core 0, redis-server on
core 1) with ``files_dir`` in a temporary directory. ``--phones`` (200) phones
hold a WebSocket (``bench.phones``, phone *i* is user ``u<i>`` subscribed to
``team:t<i % channels>``) while one dispatcher (``bench.dispatch``) publishes
``--rate`` (50) **critical** events per second round-robin over the team
channels; the phones ack them. Three phases, one run:

1. *quiet, before*: ``--quiet-s`` (8) seconds of events alone;
2. *uploads*: the events go on while every phone uploads one ``--size-mib``
   (2) MiB photo (random bytes behind a JPEG header) by tus in ``--chunk-kib``
   (256) KiB PATCHes with sha256 checksums, ``--concurrency`` (20) at a time
   (:mod:`bench.tus`); ``--cut-fraction`` (0.1) of them have their connection
   cut (RST) once, in the middle of a PATCH body at a random byte between 10 %
   and 90 % of the file, and resume by ``HEAD`` + ``PATCH`` from the server's
   ``Upload-Offset``;
3. *quiet, after*: as 1.

The uploads run in a separate process (spawned, pinned with this one to core
1), so that hashing and writing 400 MiB do not sit in the event loop that
timestamps the phones' events. Every upload must end stored whole under its
SHA-256, and every event must reach every phone of its channel.

Reported: MiB per server CPU second over the upload phase (all of the node's
CPU, events included, and net of the events' CPU rate measured in the quiet
phases), MiB/s of wall time, body bytes re-sent after the cuts (bytes the
uploader handed to the kernel minus the files' sizes: total, per cut, and the
largest per cut; target at most one chunk per cut), and the p50/p99 of event
delivery (dispatcher's send stamp to the phone's receipt) in the quiet phases
and during the uploads, with the ratio (target: unchanged within noise; the
table checks ≤ 1.2x, the quiet phases' after/before ratio shows the noise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.dispatch import HttpPublisher
from bench.phones import Phone, close_phones, connect_phones
from bench.procstat import cpu_seconds, steal_seconds
from bench.scenarios import latency_summary
from bench.servers import pin_threads
from bench.tus import TusConnection, Upload, check_stored, photo, upload

MIB = 1024 * 1024
#: Core of this load generator and the uploading process (the node is on core 0).
LOAD_CORE = 1
#: Seconds the last events of a phase may take to arrive.
SETTLE_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--phones", type=int, default=200, help="phones: sockets and uploads (200)")
    add("--channels", type=int, default=20, help="team channels the phones share (20)")
    add("--rate", type=float, default=50, help="critical events per second (50)")
    add("--quiet-s", type=float, default=8, help="seconds of each phase without uploads (8)")
    add("--cut-fraction", type=float, default=0.1, help="uploads cut once mid-PATCH (0.1)")
    add("--seed", type=int, default=14, help="random seed of the cut positions (14)")


@dataclass(frozen=True)
class Plan:
    """What the uploading process does: phone ``n`` uploads with ``tokens[n]``,
    cut once at byte ``cuts[n]`` if it has one."""

    host: str
    port: int
    tokens: list[str]
    size: int
    chunk: int
    concurrency: int
    cuts: dict[int, int]
    files: Path


def cut_positions(args: argparse.Namespace, size: int, chunk: int) -> dict[int, int]:
    """Phone -> byte at which its connection is cut: between 10 % and 90 % of
    the file, never on a chunk boundary (so the cut is inside a PATCH body)."""
    rng = random.Random(args.seed)
    chosen = rng.sample(range(args.phones), round(args.phones * args.cut_fraction))
    cuts = {}
    for phone in chosen:
        at = rng.randrange(size // 10, size * 9 // 10)
        cuts[phone] = at + 1 if at % chunk == 0 else at
    return cuts


#: The uploading process's photos, made by :func:`prepare` before the phase starts.
_PAYLOADS: list[bytes] = []


def prepare(plan: Plan) -> None:
    """In the uploading process: pin it, make every phone's photo."""
    pin_threads(os.getpid(), LOAD_CORE)
    _PAYLOADS[:] = [photo(plan.size) for _ in plan.tokens]


def upload_all(plan: Plan) -> tuple[list[Upload], float]:
    """In the uploading process, after :func:`prepare`: every phone's upload,
    checked stored, and the CPU seconds this process spent on them."""
    started = time.process_time()
    payloads = _PAYLOADS

    async def run() -> list[Upload]:
        gate = asyncio.Semaphore(plan.concurrency)

        async def one(n: int) -> Upload:
            async with gate:
                connection = TusConnection(plan.host, plan.port, plan.tokens[n])
                try:
                    return await upload(
                        connection, payloads[n], plan.chunk, name=f"pump-{n}.jpg",
                        cut_at=plan.cuts.get(n),
                    )  # fmt: skip
                finally:
                    connection.close()

        return await asyncio.gather(*(one(n) for n in range(len(plan.tokens))))

    results = asyncio.run(run())
    check_stored(plan.files, payloads)
    return results, time.process_time() - started


class Events:
    """The dispatcher's critical events to the phones, one phase at a time."""

    def __init__(
        self, publisher: HttpPublisher, phones: list[Phone], rate: float, pid: int
    ) -> None:
        self.publisher = publisher
        self.pid = pid  #: the node's
        self.phones = phones
        self.rate = rate
        self.channels = sorted({p.channel for p in phones})
        self.audience = Counter(p.channel for p in phones)

    async def phase(self, done: asyncio.Event) -> dict[str, Any]:
        """Publish at the rate until ``done``, wait for every delivery; the
        phase's deliveries, latencies and CPU figures."""
        samples: list[int] = []
        for phone in self.phones:
            phone.latencies = samples
        received = sum(p.events for p in self.phones)
        server_before, load_before = cpu_seconds(self.pid), cpu_seconds(os.getpid())
        steal, started = steal_seconds(), time.perf_counter()
        sent = expected = 0
        while not done.is_set():
            channel = self.channels[sent % len(self.channels)]
            await self.publisher.publish(channel, "critical")
            sent, expected = sent + 1, expected + self.audience[channel]
            pause = started + sent / self.rate - time.perf_counter()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), pause)
        wall = time.perf_counter() - started
        deadline = time.monotonic() + SETTLE_S
        while sum(p.events for p in self.phones) - received < expected:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        delivered = sum(p.events for p in self.phones) - received
        return {
            "wall_s": wall,
            "published": sent,
            "expected": expected,
            "lost": max(0, expected - delivered),
            "server_cpu_s": cpu_seconds(self.pid) - server_before,
            "loadgen_cpu_s": cpu_seconds(os.getpid()) - load_before,
            "steal_s": steal_seconds() - steal,
            "samples": samples,
        }


async def quiet(events: Events, seconds: float) -> dict[str, Any]:
    done = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, done.set)
    return await events.phase(done)


def resent_figures(uploads: list[Upload], chunk: int) -> dict[str, Any]:
    """Bytes re-sent after cuts, counted from what the uploader sent."""
    cut = [u for u in uploads if u.cuts]
    uncut_extra = sum(u.sent - u.size for u in uploads if not u.cuts)
    if uncut_extra:
        raise RuntimeError(f"uploads without a cut sent {uncut_extra} bytes more than their size")
    per_cut = [(u.sent - u.size) / u.cuts for u in cut]
    cuts = sum(u.cuts for u in cut)
    resent = sum(u.sent - u.size for u in cut)
    return {
        "cuts": cuts,
        "bytes_sent": sum(u.sent for u in uploads),
        "file_bytes": sum(u.size for u in uploads),
        "resent_bytes": resent,
        "resent_per_cut_kib": resent / cuts / 1024 if cuts else 0.0,
        "resent_max_per_cut_kib": max(per_cut, default=0) / 1024,
        "chunk_kib": chunk / 1024,
        # The server keeps nothing of a checksummed chunk that was cut.
        "resumed_at_chunk_start": sum(
            1 for u in cut for offset in u.resumed_from if offset % chunk == 0
        ),
        "locked_retries": sum(u.locked for u in uploads),
    }


async def measure(
    host: str, port: int, pid: int, files: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """One run of the three phases against the node at ``host:port`` (``pid``)."""
    from bench.seeding import TOKENS
    from fieldpush.identity.auth import mint_token

    pin_threads(os.getpid(), LOAD_CORE)
    size, chunk = int(args.size_mib * MIB), args.chunk_kib * 1024
    teams = [f"t{i % args.channels}" for i in range(args.phones)]
    tokens = [
        mint_token(TOKENS, user=f"u{i}", role="sales", teams=[team], ttl_s=3600)
        for i, team in enumerate(teams)
    ]
    dispatcher = mint_token(TOKENS, user="dispatcher", role="dispatcher", ttl_s=3600)
    plan = Plan(host, port, tokens, size, chunk, args.concurrency,
                cut_positions(args, size, chunk), files)  # fmt: skip
    phones, _ = await connect_phones(host, port, tokens, [f"team:{t}" for t in teams], [])
    publisher = await HttpPublisher.open(host, port, dispatcher)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
    try:
        await asyncio.get_running_loop().run_in_executor(pool, prepare, plan)
        events = Events(publisher, phones, args.rate, pid)
        await quiet(events, 1.0)  # warm-up: first publishes, every subscription live
        before = await quiet(events, args.quiet_s)
        done = asyncio.Event()
        work = asyncio.get_running_loop().run_in_executor(pool, upload_all, plan)
        work.add_done_callback(lambda _: done.set())
        during = await events.phase(done)
        uploads, uploader_cpu = await work
        after = await quiet(events, args.quiet_s)
    finally:
        pool.shutdown()
        await publisher.close()
        close_phones(phones)
    return summary(before, during, after, uploads, uploader_cpu, chunk)


def summary(
    before: dict[str, Any],
    during: dict[str, Any],
    after: dict[str, Any],
    uploads: list[Upload],
    uploader_cpu: float,
    chunk: int,
) -> dict[str, Any]:
    """The run's figures (see the module's docstring)."""
    mib = sum(u.size for u in uploads) / MIB
    quiet_rate = (before["server_cpu_s"] + after["server_cpu_s"]) / (
        before["wall_s"] + after["wall_s"]
    )
    upload_cpu = during["server_cpu_s"] - quiet_rate * during["wall_s"]
    quiet_lat = latency_summary(before["samples"] + after["samples"])
    busy_lat = latency_summary(during["samples"])
    before_lat, after_lat = latency_summary(before["samples"]), latency_summary(after["samples"])
    return {
        "uploads": len(uploads),
        "upload_wall_s": during["wall_s"],
        "server_cpu_s": during["server_cpu_s"],
        "mib_per_wall_s": mib / during["wall_s"],
        "mib_per_server_cpu_s": mib / during["server_cpu_s"],
        "mib_per_upload_cpu_s": mib / upload_cpu if upload_cpu > 0 else float("nan"),
        "events_cpu_s_per_s": quiet_rate,
        **resent_figures(uploads, chunk),
        "events_quiet": before["expected"] + after["expected"],
        "events_uploads": during["expected"],
        "lost": before["lost"] + during["lost"] + after["lost"],
        "quiet_p50_ms": quiet_lat["p50_ms"],
        "quiet_p99_ms": quiet_lat["p99_ms"],
        "uploads_p50_ms": busy_lat["p50_ms"],
        "uploads_p99_ms": busy_lat["p99_ms"],
        "p99_uploads_over_quiet": busy_lat["p99_ms"] / quiet_lat["p99_ms"],
        "p99_after_over_before": after_lat["p99_ms"] / before_lat["p99_ms"],
        "loadgen_cpu_s": during["loadgen_cpu_s"],
        "uploader_cpu_s": uploader_cpu,
        "steal_s": during["steal_s"],
    }
