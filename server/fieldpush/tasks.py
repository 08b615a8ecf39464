"""Ending the background tasks the node's parts own."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop"]


async def stop(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each task given (None: nothing to stop) and return once all
    have ended; what they raised, their cancellation included, is theirs."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
