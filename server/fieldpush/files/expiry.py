"""The background task that removes expired unfinished uploads.

Every node of a cluster runs one; removal is safe to race (an upload that one
node removed is skipped by the other, one being written is left alone).
"""

from __future__ import annotations

import asyncio
import logging

from fieldpush.files.uploads import Uploads
from fieldpush.tasks import stop

__all__ = ["ExpirySweeper"]

log = logging.getLogger("fieldpush.files")


class ExpirySweeper:
    """Calls :meth:`Uploads.expire` every ``interval_s`` seconds between
    :meth:`start` and :meth:`close`; a failed sweep is logged and retried at
    the next interval."""

    def __init__(self, uploads: Uploads, interval_s: float) -> None:
        self.uploads = uploads
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="files-expiry")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                removed = await self.uploads.expire()
            except OSError:
                log.exception("sweeping expired uploads failed; retrying in %ss", self.interval_s)
                continue
            if removed:
                log.info("removed %d expired unfinished uploads", removed)
