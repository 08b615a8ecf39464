"""The measured scenarios: steady fan-out, burst, idle phones (and stalled phones).

Each runs in the load-generator process against one server process and returns
plain numbers; ``__main__`` runs them for the baseline and for fieldpush and
prints the ratios. Every loop is bounded: by the duration or the publish count,
and every wait for deliveries by a timeout.

Besides the server's CPU (``/proc/<pid>/stat``) each scenario reports the load
generator's and redis-server's over the same window, both on the other core:
if their sum came near the window's length, the load side would be the
bottleneck and the figures would not measure the server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bench.dispatch import Publisher
from bench.phones import Phone, close_phones, connect_phones
from bench.procstat import cpu_seconds, rss_kib, steal_seconds
from bench.scrape import histogram, metrics_text, quantile_upper_bound

PublisherFactory = Callable[[], Awaitable[Publisher]]


class Profiler(Protocol):
    """Runs during each measured window (``bench.profile.PySpy``)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Target:
    """A server under test, and the redis-server it uses."""

    name: str
    host: str
    port: int
    pid: int
    redis_pid: int
    publisher: PublisherFactory
    handshake_concurrency: int = 50
    profiler: Profiler | None = None


@dataclass
class Phones:
    """The phones of a run; ``tokens[i]`` subscribes to ``channels[i]``."""

    tokens: list[str]
    channels: list[str]


class CpuWindow:
    """CPU seconds of the server, the load generator and redis-server over a
    window, and the time the hypervisor stole from this machine meanwhile."""

    def __init__(self, target: Target) -> None:
        self.profiler = target.profiler
        if self.profiler is not None:
            self.profiler.start()
        self.pids = {"server": target.pid, "loadgen": os.getpid(), "redis": target.redis_pid}
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.steal = steal_seconds()
        self.wall = time.perf_counter()

    def close(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        used = {f"{n}_cpu_s": cpu_seconds(p) - self.before[n] for n, p in self.pids.items()}
        result = {
            "window_s": wall,
            **used,
            # Shares of the window each core was busy with the processes under test.
            "server_core_busy": used["server_cpu_s"] / wall,
            "load_core_busy": (used["loadgen_cpu_s"] + used["redis_cpu_s"]) / wall,
            "steal_s": steal_seconds() - self.steal,
        }
        if self.profiler is not None:
            self.profiler.stop()
        return result


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of nanosecond values, in ms."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(len(sorted_values) * fraction))
    return sorted_values[index] / 1e6


def latency_summary(latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
    }


def delivery_summary(phones: list[Phone], expected: int) -> dict[str, Any]:
    """Deliveries of the reading phones, losses, duplicates, closed phones, frame sizes."""
    healthy = [p for p in phones if not p.stalled]
    delivered = sum(p.events for p in healthy)
    frames = sum(p.event_frames for p in healthy)
    return {
        "expected": expected,
        "delivered": delivered,
        "lost": max(0, expected - delivered),
        "extra": max(0, delivered - expected),
        "phones_closed": sum(1 for p in phones if p.lost),
        "events_per_frame": delivered / frames if frames else float("nan"),
        "bytes_per_event": sum(p.event_bytes for p in healthy) / delivered if delivered else 0,
    }


def _received(phones: list[Phone]) -> int:
    return sum(p.events for p in phones if not p.stalled)


async def _settle(phones: list[Phone], expected: int, timeout_s: float) -> None:
    """Wait until the reading phones have ``expected`` events, or the timeout."""
    deadline = time.monotonic() + timeout_s
    while _received(phones) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def _reset(phones: list[Phone], latencies: list[int]) -> None:
    for phone in phones:
        phone.events = phone.event_frames = phone.event_bytes = phone.last_ns = 0
    latencies.clear()


async def _warm_up(
    publisher: Publisher, phones: list[Phone], channels: list[str], latencies: list[int]
) -> None:
    """One publish per channel, delivered, then forgotten: the first publish of a
    fresh server (script loads, first allocations) is not part of any figure, and
    it proves every subscription is live before the clock starts."""
    for channel in channels:
        await publisher.publish(channel)
    expected = sum(1 for p in phones if not p.stalled)
    await _settle(phones, expected, timeout_s=10)
    if _received(phones) != expected:
        raise RuntimeError(f"warm-up: {_received(phones)} of {expected} events arrived")
    _reset(phones, latencies)


def _audience(phones: list[Phone], channels: list[str]) -> dict[str, int]:
    """Reading phones per channel."""
    return {ch: sum(1 for p in phones if p.channel == ch and not p.stalled) for ch in channels}


async def steady(
    target: Target,
    phones_spec: Phones,
    *,
    rate: float,
    duration_s: float,
    stalled_every: int = 0,
    critical_every: int = 0,
) -> dict[str, Any]:
    """Publish ``rate`` events per second round-robin over the channels for
    ``duration_s``, one at a time; each reaches every phone of its channel. With
    ``stalled_every`` n, every n-th phone never reads: figures are of the others.
    With ``critical_every`` n, every n-th publish is ``critical`` (phones ack
    those), and fieldpush's ack round trip is read from its ``/metrics``."""
    latencies: list[int] = []
    phones, _ = await connect_phones(
        target.host, target.port, phones_spec.tokens, phones_spec.channels, latencies,
        concurrency=target.handshake_concurrency, stalled_every=stalled_every,
    )  # fmt: skip
    try:
        channels = sorted(set(phones_spec.channels))
        audience = _audience(phones, channels)
        publisher = await target.publisher()
        await asyncio.sleep(0.5)
        await _warm_up(publisher, phones, channels, latencies)
        window = CpuWindow(target)
        started = time.perf_counter()
        sent = expected = 0
        while (now := time.perf_counter()) - started < duration_s:
            pause = started + sent / rate - now
            if pause > 0:
                await asyncio.sleep(pause)
            channel = channels[sent % len(channels)]
            critical = critical_every and sent % critical_every == critical_every - 1
            await publisher.publish(channel, "critical" if critical else "normal")
            sent += 1
            expected += audience[channel]
        publish_s = time.perf_counter() - started
        await _settle(phones, expected, timeout_s=10)
        cpu = window.close()
        await publisher.close()
        acks = await _ack_figures(target, phones) if critical_every else {}
    finally:
        close_phones(phones)
    summary = delivery_summary(phones, expected)
    return {
        **acks,
        "published": sent,
        "publish_rate": sent / publish_s,
        **summary,
        "deliveries_per_cpu_s": summary["delivered"] / cpu["server_cpu_s"]
        if cpu["server_cpu_s"]
        else float("nan"),
        **latency_summary(latencies),
        **cpu,
    }


async def _ack_figures(target: Target, phones: list[Phone]) -> dict[str, Any]:
    """Acks the phones sent and, for fieldpush, the p99 of its ack round trip
    (event written until the ack was recorded; the upper bound of its bucket)."""
    acks_sent = sum(p.acks for p in phones)
    if target.name != "fieldpush":
        nan = float("nan")
        return {
            "acks_sent": acks_sent,
            "acks_recorded": 0,
            "ack_rtt_p50_ms": nan,
            "ack_rtt_p99_ms": nan,
        }
    await asyncio.sleep(0.5)  # the last acks are recorded
    text = await metrics_text(target.host, target.port)
    buckets = histogram(text, "fieldpush_ack_roundtrip_seconds")
    return {
        "acks_sent": acks_sent,
        "acks_recorded": buckets[-1][1] if buckets else 0,
        "ack_rtt_p50_ms": quantile_upper_bound(buckets, 0.50) * 1000,
        "ack_rtt_p99_ms": quantile_upper_bound(buckets, 0.99) * 1000,
    }


async def burst(
    target: Target, phones_spec: Phones, *, count: int, dispatchers: int
) -> dict[str, Any]:
    """``count`` publishes as fast as ``dispatchers`` concurrent connections can
    send them (each waits for its reply before the next); deliveries per second
    from the first send to the last receive."""
    latencies: list[int] = []
    phones, _ = await connect_phones(
        target.host, target.port, phones_spec.tokens, phones_spec.channels, latencies,
        concurrency=target.handshake_concurrency,
    )  # fmt: skip
    try:
        channels = sorted(set(phones_spec.channels))
        audience = _audience(phones, channels)
        publishers = [await target.publisher() for _ in range(dispatchers)]
        await asyncio.sleep(0.5)
        await _warm_up(publishers[0], phones, channels, latencies)
        queue = [channels[i % len(channels)] for i in range(count)]
        expected = sum(audience[ch] for ch in queue)

        async def dispatch(publisher: Publisher, share: list[str]) -> None:
            for channel in share:
                await publisher.publish(channel)

        window = CpuWindow(target)
        started_ns = time.time_ns()
        await asyncio.gather(
            *(dispatch(p, queue[i::dispatchers]) for i, p in enumerate(publishers))
        )
        publish_s = (time.time_ns() - started_ns) / 1e9
        await _settle(phones, expected, timeout_s=30)
        cpu = window.close()
        for publisher in publishers:
            await publisher.close()
    finally:
        close_phones(phones)
    elapsed_s = (max(started_ns + 1, *(p.last_ns for p in phones)) - started_ns) / 1e9
    summary = delivery_summary(phones, expected)
    return {
        "published": count,
        **summary,
        "publish_s": publish_s,
        "elapsed_s": elapsed_s,
        "deliveries_per_s": summary["delivered"] / elapsed_s,
        **latency_summary(latencies),
        **cpu,
    }


async def idle(target: Target, phones_spec: Phones) -> dict[str, Any]:
    """Connect every phone (connect, upgrade, ``hello``, ``welcome``) with a
    bounded number of handshakes in flight, then hold them idle and read the
    server's memory."""
    await asyncio.sleep(1)  # the fresh server settles
    rss_before = rss_kib(target.pid)
    window = CpuWindow(target)
    phones, elapsed = await connect_phones(
        target.host, target.port, phones_spec.tokens, phones_spec.channels, [],
        concurrency=target.handshake_concurrency,
    )  # fmt: skip
    cpu = window.close()
    try:
        await asyncio.sleep(3)  # timers fire, garbage is collected, allocations settle
        rss_after = rss_kib(target.pid)
        closed = sum(1 for p in phones if p.lost)
    finally:
        close_phones(phones)
    await asyncio.sleep(1)
    count = len(phones)
    return {
        "phones": count,
        "phones_closed": closed,
        "handshakes_per_s": count / elapsed,
        "server_cpu_per_handshake_us": cpu["server_cpu_s"] / count * 1e6,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_connection": (rss_after - rss_before) / count,
        **cpu,
    }
