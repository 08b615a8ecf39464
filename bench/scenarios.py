"""The measured scenarios: steady fan-out, burst, idle phones.

Each runs in the load-generator process against one server process (``pid``)
and returns plain numbers; ``__main__`` runs them for fieldpush and for the
baseline and prints the ratios.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.dispatch import Publisher
from bench.phones import Phone, close_phones, connect_phones
from bench.procstat import cpu_seconds, rss_kib

PublisherFactory = Callable[[], Awaitable[Publisher]]


@dataclass
class Target:
    """A server under test."""

    name: str
    host: str
    port: int
    pid: int
    publisher: PublisherFactory


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(len(sorted_values) * fraction))
    return sorted_values[index] / 1e6  # ns -> ms


def latency_summary(latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
    }


async def _phones(
    target: Target,
    tokens: list[str],
    channels: list[str],
    latencies: list[int],
    stalled_every: int = 0,
) -> list[Phone]:
    phones, _ = await connect_phones(
        target.host, target.port, tokens, channels, latencies, stalled_every=stalled_every
    )
    return phones


async def _settle(phones: list[Phone], expected: int, timeout_s: float) -> float:
    """Wait until every expected event arrived (or the timeout); return when the
    last did. Stalled phones do not count."""
    deadline = time.monotonic() + timeout_s
    while sum(p.events for p in phones if not p.stalled) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return time.perf_counter()


async def steady(
    target: Target,
    tokens: list[str],
    channels: list[str],
    *,
    rate: float,
    duration_s: float,
    stalled_every: int = 0,
) -> dict[str, Any]:
    """Publish ``rate`` events per second round-robin over the channels for
    ``duration_s``; each reaches every phone of its channel. With
    ``stalled_every`` n, every n-th phone never reads: figures are of the others."""
    latencies: list[int] = []
    phones = await _phones(target, tokens, channels, latencies, stalled_every)
    team_channels = sorted(set(channels))
    per_channel = {
        ch: sum(1 for p in phones if p.channel == ch and not p.stalled) for ch in team_channels
    }
    publisher = await target.publisher()
    await asyncio.sleep(0.5)
    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    sent = 0
    expected = 0
    while time.perf_counter() - started < duration_s:
        channel = team_channels[sent % len(team_channels)]
        await publisher.publish(channel)
        sent += 1
        expected += per_channel[channel]
        pause = started + sent / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
    await _settle(phones, expected, timeout_s=10)
    cpu = cpu_seconds(target.pid) - cpu_before
    delivered = sum(p.events for p in phones if not p.stalled)
    await publisher.close()
    close_phones(phones)
    return {
        "published": sent,
        "expected": expected,
        "delivered": delivered,
        "server_cpu_s": cpu,
        "deliveries_per_cpu_s": delivered / cpu if cpu else float("nan"),
        **latency_summary(latencies),
    }


async def burst(
    target: Target, tokens: list[str], channels: list[str], *, count: int, dispatchers: int
) -> dict[str, Any]:
    """``count`` publishes as fast as ``dispatchers`` concurrent publishers can send them."""
    latencies: list[int] = []
    phones = await _phones(target, tokens, channels, latencies)
    team_channels = sorted(set(channels))
    per_channel = {ch: channels.count(ch) for ch in team_channels}
    publishers = [await target.publisher() for _ in range(dispatchers)]
    await asyncio.sleep(0.5)
    queue = [team_channels[i % len(team_channels)] for i in range(count)]
    expected = sum(per_channel[ch] for ch in queue)

    async def dispatch(publisher: Publisher, share: list[str]) -> None:
        for channel in share:
            await publisher.publish(channel)

    cpu_before = cpu_seconds(target.pid)
    started = time.perf_counter()
    await asyncio.gather(*(dispatch(p, queue[i::dispatchers]) for i, p in enumerate(publishers)))
    sent_in = time.perf_counter() - started
    finished = await _settle(phones, expected, timeout_s=30)
    elapsed = finished - started
    cpu = cpu_seconds(target.pid) - cpu_before
    delivered = sum(p.events for p in phones)
    for publisher in publishers:
        await publisher.close()
    close_phones(phones)
    return {
        "published": count,
        "expected": expected,
        "delivered": delivered,
        "publish_s": sent_in,
        "elapsed_s": elapsed,
        "deliveries_per_s": delivered / elapsed,
        "server_cpu_s": cpu,
        **latency_summary(latencies),
    }


async def idle(target: Target, tokens: list[str], channels: list[str]) -> dict[str, Any]:
    """Connect every phone (handshake + hello + welcome) and hold them idle."""
    gc.collect()
    await asyncio.sleep(0.5)
    rss_before = rss_kib(target.pid)
    cpu_before = cpu_seconds(target.pid)
    phones, elapsed = await connect_phones(target.host, target.port, tokens, channels, [])
    cpu = cpu_seconds(target.pid) - cpu_before
    await asyncio.sleep(2)  # let the server settle (timers, garbage)
    rss_after = rss_kib(target.pid)
    close_phones(phones)
    await asyncio.sleep(1)
    count = len(phones)
    return {
        "phones": count,
        "handshakes_per_s": count / elapsed,
        "server_cpu_per_handshake_us": cpu / count * 1e6,
        "kib_per_connection": (rss_after - rss_before) / count,
    }
