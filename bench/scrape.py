"""Read figures from fieldpush's ``/metrics`` (Prometheus text) during a run."""

from __future__ import annotations

import asyncio
import math

from prometheus_client.parser import text_string_to_metric_families


async def metrics_text(host: str, port: int) -> str:
    """``GET /metrics``, one short-lived HTTP/1.1 connection."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/metrics: {head[:100]!r}")
    return body.decode()


def histogram(text: str, name: str) -> list[tuple[float, int]]:
    """The cumulative ``(le, count)`` buckets of histogram ``name``, summed over
    its other labels (``priority``: a tree from before issue 15 has none)."""
    sums: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                sums[bound] = sums.get(bound, 0.0) + sample.value
    return [(bound, int(count)) for bound, count in sorted(sums.items())]


def quantile_upper_bound(buckets: list[tuple[float, int]], fraction: float) -> float:
    """The upper bound of the bucket holding the ``fraction`` quantile (nan: no data)."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return math.nan
    for bound, count in buckets:
        if count >= fraction * total:
            return bound
    return math.inf
