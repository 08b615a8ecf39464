"""Awaiting work that must not be cut short: closing sockets, and the
requests still under way on a client about to be closed.

A plain ``task.cancel()`` interrupts any ``await``, including the ones inside
httpx's and anyio's close paths (anyio's shielded scopes do not stop a native
asyncio cancellation), which leaves the rest of the sockets open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection
from typing import Any, TypeVar

__all__ = ["run_to_end", "settle"]

T = TypeVar("T")


async def run_to_end(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile
    (once or more); then re-raise that cancellation. Otherwise return its
    result or raise its exception."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled
    return task.result()


async def settle(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Wait until every task of ``tasks`` has ended (their results and
    exceptions are theirs to handle). If the caller is cancelled meanwhile,
    cancel them, still wait until all have ended, then re-raise."""
    pending = list(tasks)
    if not pending:
        return
    try:
        await asyncio.wait(pending)
    except asyncio.CancelledError:
        for task in pending:
            task.cancel()
        await run_to_end(asyncio.wait(pending))
        raise
