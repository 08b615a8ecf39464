"""Batch sync: the data of the ``batch`` sync class (chat history, debug logs)
pulled in scheduled batches (docs/sdk.md, "Batch sync"; docs/sync.md, "Batch
sync class").

:class:`BatchSync` runs one batch every ``welcome.poll.batch`` seconds (the
interval the server advertises, through :meth:`PushClient.schedule_poll
<fieldpush_client.client.PushClient.schedule_poll>`). A batch flushes the
edit queue, then pulls ``classes: ["batch"]`` with that selection's own cursor
in the :class:`~fieldpush_client.sync.SyncStore`, page by page, until nothing
more is new or the bytes of the changes pulled in this batch reach
``budget_bytes``; the next batch continues from the stored cursor, so a
backlog bigger than the budget is split across batches and nothing is lost
(each page is stored with its cursor in one transaction).

A batch is held, and nothing is sent, while:

- ``unmetered`` (the application's hook) returns False: the network is
  metered and the application wants batch data on unmetered networks only;
- the socket carries critical events
  (:meth:`PushClient.critical_busy <fieldpush_client.client.PushClient.critical_busy>`:
  one arrived within ``critical_quiet_s``, or one is not acked yet).

A held batch is tried again every ``hold_retry_s`` (at most one interval),
so it starts soon after the condition clears, not a whole interval later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from fieldpush_client.errors import RequestError
from fieldpush_client.files import Attachments
from fieldpush_client.protocol import BATCH_CLASS, Changes, ErrorCode, Pull
from fieldpush_client.sync import SyncClient

__all__ = ["BatchOutcome", "BatchSync", "Held"]

log = logging.getLogger("fieldpush_client.batch")

_CLASSES = (BATCH_CLASS,)


class Held(StrEnum):
    """Why a batch did not run."""

    METERED = "metered"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """One batch: the changes and their bytes (JSON) stored, whether the
    budget stopped it with more to pull, or why it was held (nothing sent)."""

    changes: int = 0
    bytes: int = 0
    more: bool = False
    held: Held | None = None
    #: Bytes of files uploaded and prefetched in this batch (``files``).
    file_bytes: int = 0


class BatchSync:
    """See the module docstring. ``types``: the record types to pull batch
    data of (None: every type); ``page_size``: records per pull page (the
    budget is checked after each page); ``files``: the attachments whose
    uploads (and prefetch) run in each batch, after the pull, with what is
    left of the budget, paused as soon as the batch would be held."""

    def __init__(
        self,
        sync: SyncClient,
        *,
        budget_bytes: int = 256 * 1024,
        unmetered: Callable[[], bool] | None = None,
        critical_quiet_s: float = 30.0,
        hold_retry_s: float = 5.0,
        page_size: int = 50,
        types: tuple[str, ...] | None = None,
        files: Attachments | None = None,
    ) -> None:
        if budget_bytes < 1 or page_size < 1:
            raise ValueError("budget_bytes and page_size must be positive")
        self.sync = sync
        self.budget_bytes = budget_bytes
        self.unmetered = unmetered
        self.critical_quiet_s = critical_quiet_s
        self.hold_retry_s = hold_retry_s
        self.page_size = page_size
        self.types = types
        self.files = files
        self._lock = asyncio.Lock()

    def schedule(self) -> None:
        """Run :meth:`run_held` every ``welcome.poll.batch`` seconds."""
        self.sync.client.schedule_poll(BATCH_CLASS, self.run_held)

    def held(self) -> Held | None:
        """Why a batch would be held now (None: it may run)."""
        if self.unmetered is not None and not self.unmetered():
            return Held.METERED
        if self.sync.client.critical_busy(self.critical_quiet_s):
            return Held.CRITICAL
        return None

    async def run_held(self) -> BatchOutcome:
        """One scheduled batch: while it is held, wait ``hold_retry_s`` and
        look again (for at most one batch interval), then run it."""
        loop = asyncio.get_running_loop()
        session = self.sync.client.session
        interval = session.poll.get(BATCH_CLASS, 0) if session is not None else 0
        give_up = loop.time() + interval
        while (reason := self.held()) is not None:
            if loop.time() + self.hold_retry_s > give_up:
                log.info("fieldpush batch held (%s); trying at the next batch", reason)
                return BatchOutcome(held=reason)
            await asyncio.sleep(self.hold_retry_s)
        return await self.run()

    async def run(self) -> BatchOutcome:
        """One batch now, unless held (then nothing is sent): flush the edit
        queue, then pull batch data up to the budget."""
        reason = self.held()
        if reason is not None:
            return BatchOutcome(held=reason)
        async with self._lock:
            if self.sync.store.queued(limit=1):
                await self.sync.flush()
            outcome = await self._pull()
            if self.files is None or outcome.more:
                return outcome
            moved = await self.files.run_batch(self.budget_bytes - outcome.bytes, self.held)
            if moved and self.sync.store.queued(limit=1):
                await self.sync.flush()  # the references of the uploads just completed
            return BatchOutcome(outcome.changes, outcome.bytes, file_bytes=moved)

    async def _pull(self) -> BatchOutcome:
        store, types = self.sync.store, self.types
        changes = size = 0
        while True:
            cursor = store.cursor_for(types, _CLASSES)
            pull = partial(Pull, cursor=cursor, types=types, limit=self.page_size, classes=_CLASSES)
            try:
                page = await self.sync.client.call(pull, Changes)
            except RequestError as exc:
                if exc.code != ErrorCode.RESYNC:
                    raise
                log.info("fieldpush batch pull: %s; downloading the batch data again", exc)
                store.restart_download(types, _CLASSES)
                continue
            store.apply_changes(page, types, _CLASSES)
            changes += len(page.changes)
            size += sum(len(json.dumps(change.to_wire())) for change in page.changes)
            if not page.more:
                return BatchOutcome(changes, size)
            if size >= self.budget_bytes:
                return BatchOutcome(changes, size, more=True)
