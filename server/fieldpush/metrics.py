"""Prometheus metrics of one node, in the ``fieldpush_`` namespace.

Labels are low-cardinality only: a priority (``critical``, ``high``,
``normal``, ``low``), a transport (``websocket``, ``longpoll``), a token's
role, a channel *kind* (``user``, ``team``, ``broadcast``, ``dispatch``), a
close code, a protocol error code, an outcome: never a raw channel, user,
token or record id. The names are the contract of docs/operations.md
("Metrics").

On the hot path a metric is a plain integer, a :class:`collections.Counter`
entry or a :class:`Histogram` (a list of integers) changed on the event loop
(no locks, no label lookup of a client library); deliveries are counted per
flush (:meth:`Metrics.deliveries`). Only a scrape builds ``prometheus_client``
metric families from them (:class:`_Families`, a custom collector) and renders
them with that library, together with its process collector (``process_*``):
docs/performance.md ("Metrics on the hot path") has the measurement behind
this split.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["CONTENT_TYPE", "PRIORITIES", "TRANSPORTS", "Histogram", "Metrics"]

#: The media type of :meth:`Metrics.render` (the Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: The protocol's priorities (``fieldpush_client.protocol.Priority``), most urgent first.
PRIORITIES = ("critical", "high", "normal", "low")
#: The transports a phone can use: the socket and ``POST /v1/poll``.
TRANSPORTS = ("websocket", "longpoll")
#: Outcomes of a sync mutation in ``fieldpush_sync_mutations_total``.
MUTATION_OUTCOMES = ("applied", "unchanged", "conflict", "rejected", "unavailable")

#: Durations: fine below 20 ms, where the targets are (docs/performance.md), up to 10 s.
DURATION_BOUNDS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.02,
    0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Clock offsets of devices (negative: behind, or the edit waited offline):
#: from a day behind to a day ahead.
OFFSET_BOUNDS = (
    -86400.0, -3600.0, -300.0, -60.0, -10.0, -1.0, -0.1, 0.0,
    0.1, 1.0, 10.0, 60.0, 300.0, 3600.0, 86400.0,
)  # fmt: skip

#: Records per pull.
RECORD_BOUNDS = (0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0)

#: A value read at scrape time.
Reading = Callable[[], float]


class Delivered(Hashable, Protocol):
    """An event as the flusher wrote it (:class:`fieldpush.events.event.Event`)."""

    @property
    def priority(self) -> str: ...

    @property
    def ms(self) -> int:
        """Wall-clock milliseconds when it was stored."""


class Histogram:
    """Buckets of observed values, upper ``bounds`` ascending (not cumulative
    until rendered)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count ``value`` ``times`` times."""
        self.sum += value * times
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += times
                return
        self.counts[-1] += times

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        """Add this histogram to ``family`` as the series of ``labels``."""
        total = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        family.add_metric(labels, buckets, self.sum)
        if self.bounds[0] < 0:  # the library leaves out _count and _sum then (OpenMetrics)
            named = dict(zip(family._labelnames, labels, strict=True))
            family.samples.append(Sample(f"{family.name}_count", named, total))
            family.samples.append(Sample(f"{family.name}_sum", named, self.sum))


def by_priority() -> dict[str, Histogram]:
    """One duration histogram per priority."""
    return {priority: Histogram() for priority in PRIORITIES}


class Metrics:
    """The node's metrics (see the module docstring); :meth:`render` is a scrape.

    ``gauges`` and ``counters`` are unlabelled values read at scrape time
    (name without the ``fieldpush_`` prefix: help text, reader);
    ``connections`` the open connections by (transport, role).
    """

    def __init__(
        self,
        *,
        version: str = "",
        gauges: Mapping[str, tuple[str, Reading]] | None = None,
        counters: Mapping[str, tuple[str, Reading]] | None = None,
        connections: Callable[[], Mapping[tuple[str, str], int]] | None = None,
    ) -> None:
        self._version = version
        self._gauges = dict(gauges or {})
        self._counters = dict(counters or {})
        self._connections = connections or dict
        #: Events written by the flusher, by priority (:meth:`deliveries`).
        self.events_delivered: Counter[str] = Counter()
        #: From the event's stored time to the flush that wrote it, by priority.
        self.delivery_latency = by_priority()
        self.frames_written = 0
        self.replayed_events = 0
        #: Connections opened, by transport (a poll is one); polls waiting now, by role.
        self.connections_opened: Counter[str] = Counter()
        self.polling: Counter[str] = Counter()
        self.handshakes_accepted = 0
        #: Refused handshakes (upgrade or hello) by the protocol's error code.
        self.handshake_refusals: Counter[str] = Counter()
        self.closed: Counter[int] = Counter()
        #: Accepted publishes (not idempotent repeats), by priority; per channel, by kind.
        self.publishes: Counter[str] = Counter()
        self.published: Counter[str] = Counter()
        #: From the publish request's arrival to the event stored, by priority.
        self.publish_duration = by_priority()
        #: Refused publishes, by the protocol's error code.
        self.publish_errors: Counter[str] = Counter()
        self.bad_requests = 0
        self.acks = 0
        self.escalations = 0
        #: Rate limits applied, by what was limited (``messages``, ``in_flight``,
        #: ``connections_per_user``).
        self.rate_limited: Counter[str] = Counter()
        #: ``fieldpush_mutations_total{status}`` (kept results returned again: ``replayed``).
        self.mutations: Counter[str] = Counter()
        #: ``fieldpush_sync_mutations_total{outcome,reason}``.
        self.sync_mutations: Counter[tuple[str, str]] = Counter()
        self.sync_mutate_duration = Histogram()
        self.sync_pull_duration = Histogram()
        self.sync_pull_records = Histogram(RECORD_BOUNDS)
        self.webhook_batches = 0
        self.webhook_entries = 0
        self.webhook_failures: Counter[str] = Counter()
        self.webhook_gaps = 0
        #: Upload bytes kept on disk, uploads completed, chunks refused by their
        #: checksum, unfinished uploads removed as expired (docs/attachments.md).
        self.files_bytes_received = 0
        self.files_uploads_completed = 0
        self.files_checksum_failures = 0
        self.files_uploads_expired = 0
        #: From a critical event written to a socket until its ack was recorded.
        self.ack_roundtrip = by_priority()
        #: Per phone stamp judged: its offset from the server's clock (docs/sync.md).
        self.clock_offset = Histogram(OFFSET_BOUNDS)
        #: Phone stamps further ahead of the server's clock than ``sync_max_skew_s``.
        self.clock_skewed = 0
        self.registry = CollectorRegistry()
        self.registry.register(_Families(self))
        ProcessCollector(registry=self.registry)

    def deliveries(self, events: Iterable[Delivered], now_s: float) -> None:
        """Count events the flusher wrote at wall-clock ``now_s``: per priority
        and the latency since each was stored (an event written to many
        sockets in one flush is timed once, with its count)."""
        delivered = self.events_delivered
        latency = self.delivery_latency
        for event, times in Counter(events).items():
            priority = event.priority
            delivered[priority] += times
            latency[priority].observe(max(0.0, now_s - event.ms / 1000), times)

    def handshake_refused(self, reason: str) -> None:
        """A handshake was refused with the protocol's error code ``reason``."""
        self.handshake_refusals[reason] += 1

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every metric."""
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        """Every ``fieldpush_`` metric family, built now from the counters."""
        yield from self._gauge_families()
        yield from self._counter_families()
        yield from self._histogram_families()

    def _gauge_families(self) -> Iterator[Metric]:
        connections = GaugeMetricFamily(
            "fieldpush_connections",
            "Open connections (sockets; polls waiting), by transport and token role "
            "(none: before hello).",
            labels=["transport", "role"],
        )
        counts = {(transport, "none"): 0 for transport in TRANSPORTS}
        counts.update(self._connections())
        for (transport, role), count in sorted(counts.items()):
            connections.add_metric([transport, role], count)
        yield connections
        build = GaugeMetricFamily(
            "fieldpush_build_info", "Always 1: the running version.", labels=["version", "python"]
        )
        build.add_metric([self._version, platform.python_version()], 1)
        yield build
        for name, (help_text, read) in self._gauges.items():
            yield GaugeMetricFamily(f"fieldpush_{name}", help_text, value=read())

    def _counter_families(self) -> Iterator[Metric]:
        def counter(
            name: str, help_text: str, values: Mapping[tuple[str, ...], int], *labels: str
        ) -> CounterMetricFamily:
            family = CounterMetricFamily(f"fieldpush_{name}", help_text, labels=list(labels))
            for key, value in sorted(values.items()):
                family.add_metric(list(key), value)
            return family

        def single(name: str, help_text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"fieldpush_{name}", help_text, value=value)

        def keyed(
            counts: Mapping[str, int] | Mapping[int, int], seed: Iterable[str] = ()
        ) -> dict[tuple[str, ...], int]:
            values: dict[tuple[str, ...], int] = {(key,): 0 for key in seed}
            values.update({(str(key),): n for key, n in counts.items()})
            return values

        yield counter(
            "connections_opened_total",
            "Connections opened: WebSocket upgrades accepted, polls received.",
            keyed(self.connections_opened, TRANSPORTS),
            "transport",
        )
        yield counter(
            "handshakes_total",
            "Handshakes (upgrade and hello) by outcome.",
            {
                ("accepted",): self.handshakes_accepted,
                ("refused",): sum(self.handshake_refusals.values()),
            },
            "outcome",
        )
        yield counter(
            "handshake_refusals_total",
            "Refused handshakes, by the protocol's error code.",
            keyed(self.handshake_refusals),
            "reason",
        )
        yield counter(
            "publishes_total",
            "Events accepted by POST /v1/publish (idempotent repeats not counted), by priority.",
            keyed(self.publishes, PRIORITIES),
            "priority",
        )
        yield counter(
            "publish_errors_total",
            "Refused publishes, by the protocol's error code.",
            keyed(self.publish_errors),
            "code",
        )
        yield counter(
            "events_delivered_total",
            "Live events written to sockets by the flusher (replays not included), by priority.",
            keyed(self.events_delivered, PRIORITIES),
            "priority",
        )
        yield single("escalations_total", "Escalation events this node created.", self.escalations)
        mutations: dict[tuple[str, ...], int] = {(o, ""): 0 for o in MUTATION_OUTCOMES}
        for key, count in self.sync_mutations.items():
            mutations[key] = count
        yield counter(
            "sync_mutations_total",
            "Sync mutations answered, by outcome and rejection reason (unavailable: the "
            "backend could not take them).",
            mutations,
            "outcome",
            "reason",
        )
        yield single(
            "outbox_closes_total",
            "Connections closed with 4008: the phone did not read its events.",
            self.closed[4008],
        )
        yield counter(
            "rate_limited_total",
            "Rate limits applied, by what was limited.",
            keyed(self.rate_limited, ("messages", "in_flight", "connections_per_user")),
            "what",
        )
        yield counter(
            "webhook_deliveries_total",
            "Change-feed webhook POSTs, by outcome.",
            {
                ("delivered",): self.webhook_batches,
                ("failed",): sum(self.webhook_failures.values()),
            },
            "outcome",
        )
        yield single(
            "frames_written_total", "Event frames written to sockets.", self.frames_written
        )
        yield single(
            "replayed_events_total", "Events replayed from history on resume.", self.replayed_events
        )
        yield counter(
            "connections_closed_total",
            "WebSocket connections closed by the server, by close code.",
            keyed(self.closed),
            "code",
        )
        yield counter(
            "published_total",
            "Events accepted by POST /v1/publish, per channel, by channel kind.",
            keyed(self.published),
            "kind",
        )
        yield single(
            "bad_requests_total",
            "Invalid client messages answered with an error.",
            self.bad_requests,
        )
        yield single("acks_total", "Event ids acknowledged by clients.", self.acks)
        yield counter(
            "mutations_total",
            "Sync mutations answered, by status (applied, unchanged, conflict, rejected; "
            "replayed: a kept result returned again for a known mid).",
            keyed(self.mutations),
            "status",
        )
        yield single(
            "sync_clock_skewed_total",
            "Device stamps further ahead of the server's clock than sync_max_skew_s.",
            self.clock_skewed,
        )
        yield single(
            "webhook_entries_total",
            "Change-feed entries delivered by the webhook.",
            self.webhook_entries,
        )
        yield counter(
            "webhook_failures_total",
            "Failed change-feed webhook POSTs, by reason (timeout, connect, protocol, "
            "network, redirect, status_4xx, status_5xx, status_other).",
            keyed(self.webhook_failures),
            "reason",
        )
        yield single(
            "webhook_gaps_total",
            "Times the webhook's cursor was older than the retained change log "
            "(entries the CRM never got; alert on any increase).",
            self.webhook_gaps,
        )
        yield single(
            "files_bytes_received_total",
            "Upload bytes written and fsynced (chunks refused or rolled back not counted).",
            self.files_bytes_received,
        )
        yield single(
            "files_uploads_completed_total",
            "Uploads that reached their Upload-Length and were stored.",
            self.files_uploads_completed,
        )
        yield single(
            "files_checksum_failures_total",
            "Upload chunks refused because Upload-Checksum did not match (460).",
            self.files_checksum_failures,
        )
        yield single(
            "files_uploads_expired_total",
            "Unfinished uploads removed after files_upload_expiry_s.",
            self.files_uploads_expired,
        )
        for name, (help_text, read) in self._counters.items():
            yield single(name, help_text, read())

    def _histogram_families(self) -> Iterator[Metric]:
        def per_priority(name: str, help_text: str, histograms: dict[str, Histogram]) -> Metric:
            family = HistogramMetricFamily(f"fieldpush_{name}", help_text, labels=["priority"])
            for priority, histogram in histograms.items():
                histogram.add_to(family, [priority])
            return family

        def single(name: str, help_text: str, histogram: Histogram) -> Metric:
            family = HistogramMetricFamily(f"fieldpush_{name}", help_text, labels=[])
            histogram.add_to(family, [])
            return family

        yield per_priority(
            "publish_duration_seconds",
            "From a publish request received until its event was stored.",
            self.publish_duration,
        )
        yield per_priority(
            "delivery_latency_seconds",
            "From a live event stored (accepted) until the flush that wrote it to a socket.",
            self.delivery_latency,
        )
        yield per_priority(
            "ack_roundtrip_seconds",
            "From a critical event written to a socket until its ack was recorded.",
            self.ack_roundtrip,
        )
        yield single(
            "sync_mutate_duration_seconds",
            "Time to judge and store one batch of sync mutations.",
            self.sync_mutate_duration,
        )
        yield single(
            "sync_pull_duration_seconds", "Time to answer one pull.", self.sync_pull_duration
        )
        yield single("sync_pull_records", "Changes returned per pull.", self.sync_pull_records)
        yield single(
            "sync_clock_offset_seconds",
            "Device stamps as sent minus the server's clock at receipt "
            "(negative: behind, or made offline).",
            self.clock_offset,
        )


class _Families(Collector):
    """The node's metrics as a ``prometheus_client`` collector (read at scrape)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()
