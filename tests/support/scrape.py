"""A node's ``/metrics``, parsed by prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["families", "lines", "value"]


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


def lines(text: bytes | str, *prefixes: str) -> list[str]:
    """The samples of a scrape whose name starts with one of ``prefixes``, in
    the scrape's order, each as ``name{label="v",...} value`` (a whole value
    without ``.0``): a compact form for exact comparisons."""
    found = []
    raw = text.decode() if isinstance(text, bytes) else text
    for family in text_string_to_metric_families(raw):
        for sample in family.samples:
            if not sample.name.startswith(prefixes):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            number = int(sample.value) if float(sample.value).is_integer() else sample.value
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            found.append(f"{name} {number}")
    return found
