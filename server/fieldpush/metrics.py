"""Prometheus metrics of one node, in the ``fieldpush_`` namespace.

Labels are low-cardinality only: a channel *kind* (``user``, ``team``,
``broadcast``, ``dispatch``), a close code, an HTTP route: never a raw channel,
user or token. Counters are plain integers incremented on the event loop (no
locks), aggregated per flush on the hot path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["Histogram", "Metrics"]


#: Durations: fine below 20 ms, where the targets are (docs/performance.md).
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


class Histogram:
    """Cumulative buckets of observed values (seconds), upper ``bounds`` ascending."""

    def __init__(self, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        for index, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[index] += 1
                return
        self.counts[-1] += 1

    def render(self, name: str, help_text: str) -> list[str]:
        lines = [f"# HELP fieldpush_{name} {help_text}", f"# TYPE fieldpush_{name} histogram"]
        total = 0
        for bound, count in zip((*self.bounds, "+Inf"), self.counts, strict=True):
            total += count
            lines.append(f'fieldpush_{name}_bucket{{le="{bound}"}} {total}')
        lines.append(f"fieldpush_{name}_sum {self.sum}")
        lines.append(f"fieldpush_{name}_count {total}")
        return lines


class Metrics:
    """Counters and gauges of a node, rendered in the Prometheus text format."""

    def __init__(
        self,
        gauges: dict[str, tuple[str, Callable[[], float]]] | None = None,
        catchups: Callable[[], int] = lambda: 0,
    ) -> None:
        self.events_delivered = 0
        self.frames_written = 0
        self.replayed_events = 0
        self.connections_total = 0
        self.closed: Counter[int] = Counter()
        self.published: Counter[str] = Counter()
        self.publish_errors: Counter[int] = Counter()
        self.bad_requests = 0
        self.acks = 0
        self._catchups = catchups
        self.escalations = 0
        self.mutations: Counter[str] = Counter()
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
        self.ack_roundtrip = Histogram()
        #: Per phone stamp judged: its offset from the server's clock (docs/sync.md).
        self.clock_offset = Histogram(OFFSET_BOUNDS)
        #: Phone stamps further ahead of the server's clock than ``sync_max_skew_s``.
        self.clock_skewed = 0
        #: Records found differing by drift digests, per record type (docs/sync.md).
        self.drift_records: Counter[str] = Counter()
        self._gauges = gauges or {}

    def render(self) -> str:
        lines: list[str] = []

        def counter(name: str, help_text: str, values: dict[str, float]) -> None:
            lines.append(f"# HELP fieldpush_{name} {help_text}")
            lines.append(f"# TYPE fieldpush_{name} counter")
            for labels, value in values.items():
                lines.append(f"fieldpush_{name}{labels} {value}")

        counter("events_delivered_total", "Events written to sockets.", {"": self.events_delivered})
        counter(
            "frames_written_total", "Event frames written to sockets.", {"": self.frames_written}
        )
        counter(
            "replayed_events_total",
            "Events replayed from history on resume.",
            {"": self.replayed_events},
        )
        counter(
            "connections_total", "WebSocket connections accepted.", {"": self.connections_total}
        )
        counter(
            "connections_closed_total",
            "WebSocket connections closed by the server, by close code.",
            {f'{{code="{code}"}}': n for code, n in sorted(self.closed.items())},
        )
        counter(
            "published_total",
            "Events accepted by POST /v1/publish, by channel kind.",
            {f'{{kind="{kind}"}}': n for kind, n in sorted(self.published.items())},
        )
        counter(
            "publish_errors_total",
            "Refused publishes, by HTTP status.",
            {f'{{status="{status}"}}': n for status, n in sorted(self.publish_errors.items())},
        )
        counter(
            "bad_requests_total",
            "Invalid client messages answered with an error.",
            {"": self.bad_requests},
        )
        counter("acks_total", "Event ids acknowledged by clients.", {"": self.acks})
        counter(
            "backend_catchups_total",
            "Channel catch-ups from history after a live-feed gap.",
            {"": self._catchups()},
        )
        counter(
            "escalations_total",
            "Escalation events this node published (unacked critical events).",
            {"": self.escalations},
        )
        counter(
            "mutations_total",
            "Sync mutations answered, by status (applied, unchanged, conflict, rejected; "
            "replayed: a kept result returned again for a known mid).",
            {f'{{status="{status}"}}': n for status, n in sorted(self.mutations.items())},
        )
        counter(
            "sync_clock_skewed_total",
            "Device stamps further ahead of the server's clock than sync_max_skew_s.",
            {"": self.clock_skewed},
        )
        counter(
            "drift_records_total",
            "Records a phone held differently from the server, found by drift digests.",
            {f'{{type="{name}"}}': n for name, n in sorted(self.drift_records.items())},
        )
        counter(
            "webhook_deliveries_total",
            "Change-feed webhook POSTs answered 2xx.",
            {"": self.webhook_batches},
        )
        counter(
            "webhook_entries_total",
            "Change-feed entries delivered by the webhook.",
            {"": self.webhook_entries},
        )
        counter(
            "webhook_failures_total",
            "Failed change-feed webhook POSTs, by reason (timeout, connect, protocol, "
            "network, redirect, status_4xx, status_5xx, status_other).",
            {f'{{reason="{reason}"}}': n for reason, n in sorted(self.webhook_failures.items())},
        )
        counter(
            "webhook_gaps_total",
            "Times the webhook's cursor was older than the retained change log "
            "(entries the CRM never got; alert on any increase).",
            {"": self.webhook_gaps},
        )
        counter(
            "files_bytes_received_total",
            "Upload bytes written and fsynced (chunks refused or rolled back not counted).",
            {"": self.files_bytes_received},
        )
        counter(
            "files_uploads_completed_total",
            "Uploads that reached their Upload-Length and were stored.",
            {"": self.files_uploads_completed},
        )
        counter(
            "files_checksum_failures_total",
            "Upload chunks refused because Upload-Checksum did not match (460).",
            {"": self.files_checksum_failures},
        )
        counter(
            "files_uploads_expired_total",
            "Unfinished uploads removed after files_upload_expiry_s.",
            {"": self.files_uploads_expired},
        )
        lines.extend(
            self.ack_roundtrip.render(
                "ack_roundtrip_seconds",
                "From a critical event written to a socket until its ack was recorded.",
            )
        )
        lines.extend(
            self.clock_offset.render(
                "sync_clock_offset_seconds",
                "Device stamps as sent minus the server's clock at receipt "
                "(negative: behind, or made offline).",
            )
        )
        for name, (help_text, read) in self._gauges.items():
            lines.append(f"# HELP fieldpush_{name} {help_text}")
            lines.append(f"# TYPE fieldpush_{name} gauge")
            lines.append(f"fieldpush_{name} {read()}")
        return "\n".join(lines) + "\n"
