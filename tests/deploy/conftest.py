"""Fixtures of the deploy tests: Debian's prometheus package (tests/support/prometheus.py)."""

from __future__ import annotations

from tests.support.prometheus import prometheus_tools

__all__ = ["prometheus_tools"]
