"""Test timeouts scale with one environment variable, FIELDPUSH_TEST_TIMEOUT_SCALE,
and every wait for a condition goes through :func:`eventually`."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "scaled"]

T = TypeVar("T")


def scaled(seconds: float) -> float:
    """``seconds`` times FIELDPUSH_TEST_TIMEOUT_SCALE (default 1) for slow machines."""
    return seconds * float(os.environ.get("FIELDPUSH_TEST_TIMEOUT_SCALE", "1"))


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    message: str,
    until: Callable[[T], object] = bool,
    timeout: float = 5,
    interval: float = 0.01,
) -> T:
    """Call ``predicate`` (a function or a coroutine function) until its value
    passes ``until`` (default: is truthy), and return that value. Fails with
    ``message`` and the last value seen after ``scaled(timeout)`` seconds.
    Exceptions from ``predicate`` and ``until`` propagate.

    For what the server does in the background (presence, receipts, metrics);
    never as proof that something did *not* happen: wait for a positive signal
    that comes after it instead (a ping's pong, a later event, a counter)."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if until(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message}: not within {limit:g} s (last value: {value!r})")
        await asyncio.sleep(interval)
