"""Test timeouts scale with one environment variable, FIELDPUSH_TEST_TIMEOUT_SCALE."""

from __future__ import annotations

import os


def scaled(seconds: float) -> float:
    """``seconds`` times FIELDPUSH_TEST_TIMEOUT_SCALE (default 1) for slow machines."""
    return seconds * float(os.environ.get("FIELDPUSH_TEST_TIMEOUT_SCALE", "1"))
