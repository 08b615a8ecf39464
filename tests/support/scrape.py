"""A node's ``/metrics``, parsed by prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["families", "value"]


def families(text: str) -> dict[str, Metric]:
    """The families of a scrape by name (counters without ``_total``); a name
    that comes twice fails the test."""
    found: dict[str, Metric] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in found, f"two families named {family.name}"
        found[family.name] = family
    return found


def value(text: str, sample: str, **labels: str) -> float:
    """The value of the sample named ``sample`` with exactly ``labels``."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"no sample {sample}{labels or ''} in /metrics")
