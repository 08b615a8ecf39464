"""The tables: each figure for the baseline and fieldpush, their ratio, the target.

With ``--repeat`` n, every scenario runs n times for each server (alternating
which goes first); a figure shows the median over the runs and its ratio is the
median of the per-repeat ratios (each pair measured back to back).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

Runs = dict[str, list[dict[str, Any]]]  # server kind -> one result per repeat


@dataclass(frozen=True)
class Figure:
    """One row of a table, with the issue's target when it has one."""

    key: str
    ratio_at_least: float | None = None  #: fieldpush / baseline must be >= this
    ratio_at_most: float | None = None  #: fieldpush / baseline must be <= this
    value_at_most: float | None = None  #: fieldpush's own value must be <= this
    unit: str = ""

    def target(self) -> str:
        if self.ratio_at_least is not None:
            return f">= {self.ratio_at_least}x"
        if self.ratio_at_most is not None:
            return f"<= {self.ratio_at_most}x"
        if self.value_at_most is not None:
            return f"<= {self.value_at_most:g}{self.unit}"
        return ""

    def met(self, ratio: float, value: float) -> bool | None:
        if self.ratio_at_least is not None:
            return ratio >= self.ratio_at_least
        if self.ratio_at_most is not None:
            return ratio <= self.ratio_at_most
        if self.value_at_most is not None:
            return value <= self.value_at_most
        return None


STEADY = [
    Figure("published"),
    Figure("expected"),
    Figure("delivered"),
    Figure("lost", value_at_most=0),
    Figure("deliveries_per_cpu_s", ratio_at_least=0.9),
    Figure("p50_ms"),
    Figure("p99_ms", value_at_most=5, unit=" ms"),
    Figure("max_ms"),
    Figure("server_cpu_s"),
    Figure("events_per_frame"),
    Figure("bytes_per_event"),
    Figure("loadgen_cpu_s"),
    Figure("redis_cpu_s"),
    Figure("load_core_busy"),
    Figure("steal_s"),
    Figure("window_s"),
]

FIGURES: dict[str, list[Figure]] = {
    "idle": [
        Figure("phones"),
        Figure("phones_closed", value_at_most=0),
        Figure("kib_per_connection", ratio_at_most=1.3),
        Figure("handshakes_per_s", ratio_at_least=0.9),
        Figure("server_cpu_per_handshake_us"),
        Figure("server_core_busy"),
        Figure("rss_before_kib"),
        Figure("rss_after_kib"),
        Figure("loadgen_cpu_s"),
        Figure("steal_s"),
        Figure("window_s"),
    ],
    "steady": STEADY,
    # Figures of the phones that read; the stalled ones may be closed (4008).
    "stalled": [f if f.key == "lost" else Figure(f.key) for f in STEADY]
    + [Figure("phones_closed")],
    # Issue 3: 5 % stalled phones, 1 % critical events acked, against the raw baseline.
    "dispatch": [
        Figure(f.key, ratio_at_least=0.85)
        if f.key == "deliveries_per_cpu_s"
        else f
        if f.key == "lost"
        else Figure(f.key)
        for f in STEADY
    ]
    + [
        Figure("phones_closed"),
        Figure("acks_sent"),
        Figure("acks_recorded"),
        Figure("ack_rtt_p50_ms"),
        Figure("ack_rtt_p99_ms", value_at_most=10, unit=" ms"),
    ],
    "burst": [
        Figure("published"),
        Figure("expected"),
        Figure("delivered"),
        Figure("lost", value_at_most=0),
        Figure("deliveries_per_s", ratio_at_least=1.0),
        Figure("elapsed_s"),
        Figure("publish_s"),
        Figure("p50_ms"),
        Figure("p99_ms"),
        Figure("max_ms"),
        Figure("server_cpu_s"),
        Figure("events_per_frame"),
        Figure("bytes_per_event"),
        Figure("loadgen_cpu_s"),
        Figure("redis_cpu_s"),
        Figure("server_core_busy"),
        Figure("load_core_busy"),
        Figure("steal_s"),
    ],
}


def _ratio(ours: float, base: float) -> float:
    if base == 0 or math.isnan(base) or math.isnan(ours):
        return float("nan")
    return ours / base


def summarise(scenario: str, runs: Runs) -> list[dict[str, Any]]:
    """One row per figure: medians, the median per-repeat ratio, the target, met or not."""
    rows = []
    for figure in FIGURES[scenario]:
        base = [run[figure.key] for run in runs["baseline"]]
        ours = [run[figure.key] for run in runs["fieldpush"]]
        ratios = [_ratio(o, b) for o, b in zip(ours, base, strict=True)]
        ratio = statistics.median(ratios)
        value = statistics.median(ours)
        if figure.value_at_most is not None and figure.key in ("lost", "phones_closed"):
            value = max(ours)  # zero loss means in every run
        rows.append(
            {
                "figure": figure.key,
                "baseline": statistics.median(base),
                "fieldpush": value,
                "ratio": ratio,
                "ratios": ratios,
                "target": figure.target(),
                "met": figure.met(ratio, value),
            }
        )
    return rows


def _number(value: float) -> str:
    if isinstance(value, int) or (not math.isnan(value) and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:,.2f}"


#: A window with more than this share of its time stolen by the hypervisor is noisy.
NOISY_STEAL = 0.02


def noisy_runs(runs: Runs) -> list[str]:
    """``kind #repeat`` of every run whose window had much of its time stolen."""
    return [
        f"{kind} #{i + 1} ({run['steal_s']:.2f} s)"
        for kind, results in runs.items()
        for i, run in enumerate(results)
        if run.get("steal_s", 0) > NOISY_STEAL * run.get("window_s", 1)
    ]


def table(title: str, rows: list[dict[str, Any]], noisy: list[str] | None = None) -> str:
    """A plain-text table of :func:`summarise` rows, and which runs were noisy."""
    lines = [
        title,
        f"  {'figure':<29}{'baseline':>13}{'fieldpush':>13}{'ratio':>8}  {'target':<10} met?",
    ]
    for row in rows:
        verdict = {None: "", True: "yes", False: "NO"}[row["met"]]
        ratio = "" if math.isnan(row["ratio"]) else f"{row['ratio']:.2f}"
        if len(row["ratios"]) > 1 and row["target"].endswith("x"):
            verdict += "  (runs: " + ", ".join(f"{r:.2f}" for r in row["ratios"]) + ")"
        lines.append(
            f"  {row['figure']:<29}{_number(row['baseline']):>13}{_number(row['fieldpush']):>13}"
            f"{ratio:>8}  {row['target']:<10} {verdict}".rstrip()
        )
    if noisy:
        lines.append(
            f"  noisy: more than {NOISY_STEAL:.0%} of the window stolen by the hypervisor in "
            + ", ".join(noisy)
            + "; CPU and latency figures of those runs are inflated: repeat"
        )
    return "\n".join(lines)


def stalled_note(summary: dict[str, list[dict[str, Any]]]) -> str | None:
    """fieldpush's p99 of the reading phones with stalled ones over its p99
    without (issue 3 asks for at most 1.2), when both scenarios ran."""
    if "steady" not in summary or "stalled" not in summary:
        return None
    p99 = {s: next(r for r in summary[s] if r["figure"] == "p99_ms") for s in ("steady", "stalled")}
    ratio = _ratio(p99["stalled"]["fieldpush"], p99["steady"]["fieldpush"])
    return f"fieldpush p99 with stalled phones / without: {ratio:.2f}  (issue 3: <= 1.2)"
