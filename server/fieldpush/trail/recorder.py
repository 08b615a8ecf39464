"""Records audit entries without making the caller wait, and never drops one.

:meth:`AuditRecorder.record` is synchronous: it stamps the entry (``ts`` now)
and queues it; the entries recorded in one event-loop iteration go to the
backend in one :meth:`~fieldpush.backend.base.AuditLog.append` (like
:mod:`fieldpush.tracking.dispatch` batches receipts), by one writer task the
recorder owns.

Guarantees:

- **Never dropped silently.** An entry recorded is kept in memory until the
  backend has stored it. While the backend is unavailable the writer retries
  the batch with a doubling backoff (0.05 s to 5 s) and logs each failure.
  An ``append`` that failed may have stored the batch (Redis timed out after
  running the script), so a retry may store it twice: on an outage entries
  are stored **at least once**, in order; never fewer.
- **Bounded.** At most ``audit_max_pending`` entries wait. Beyond, the
  audited paths refuse their action *before* doing it:
  :meth:`AuditRecorder.require` raises :class:`AuditBacklogged` (the HTTP
  API answers 503), so nothing is done that the trail could not record. An
  action admitted by ``require`` is always recorded, even past the bound (by
  at most the actions admitted in the same iteration).
- **At shutdown** :meth:`AuditRecorder.close` stores what waits, trying for
  ``close_timeout_s``; whatever it could not store is logged at ERROR with
  the count and the first entry's action (an entry is lost only when the
  process ends while the backend is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final

from fieldpush.audit.chain import AuditDraft, AuditEntry
from fieldpush.backend.base import AuditLog
from fieldpush.errors import BackendUnavailable
from fieldpush.tasks import stop

__all__ = ["AuditBacklogged", "AuditRecorder"]

log = logging.getLogger("fieldpush.audit")

#: Entries in one ``append`` at most.
BATCH_MAX: Final = 1000
BACKOFF_MIN_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0


class AuditBacklogged(BackendUnavailable):
    """The audit trail cannot take more entries now (its backend is down and
    ``audit_max_pending`` entries wait): the action was not done. A kind of
    ``BackendUnavailable``, so every path answers it as one (HTTP 503,
    ``unavailable``; safe to repeat)."""


class AuditRecorder:
    """See the module docstring."""

    def __init__(self, log_: AuditLog, *, max_pending: int, close_timeout_s: float = 5.0) -> None:
        self._log = log_
        self._max_pending = max_pending
        self._close_timeout_s = close_timeout_s
        self._pending: deque[AuditDraft] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        #: Entries stored by this node (for metrics and tests).
        self.stored = 0
        #: Listeners called with each stored batch (the checkpointer).
        self.on_stored: list[Callable[[list[AuditEntry]], None]] = []

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write_forever(), name="audit-writer"
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def require(self) -> None:
        """Raise :class:`AuditBacklogged` when the trail cannot take an entry now."""
        if len(self._pending) >= self._max_pending:
            raise AuditBacklogged("the audit trail is unavailable; try again later")

    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        role: str | None = None,
        device: str | None = None,
        fields: Mapping[str, tuple[object, object]] | None = None,
    ) -> None:
        """Queue one entry (stamped now); it is stored at the end of this
        event-loop iteration (module docstring)."""
        self._pending.append(
            AuditDraft(
                ts=time.time_ns() // 1_000_000,
                actor=actor,
                role=role or "",
                device=device or "",
                action=action,
                target=target,
                outcome=outcome,
                fields=dict(fields or {}),
            )
        )
        self._idle.clear()
        self._wake.set()

    async def flushed(self) -> None:
        """Return once every entry recorded so far is stored."""
        await self._idle.wait()

    async def _store_batch(self) -> None:
        """Store the oldest waiting entries (up to :data:`BATCH_MAX`); raises
        ``BackendUnavailable`` (then they still wait)."""
        batch = [self._pending[i] for i in range(min(BATCH_MAX, len(self._pending)))]
        stored = await self._log.append(batch)
        for _ in batch:
            self._pending.popleft()
        self.stored += len(stored)
        for listener in self.on_stored:
            listener(stored)

    async def _write_forever(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            await self._wake.wait()
            # Let the rest of this iteration record before the batch is cut.
            await asyncio.sleep(0)
            self._wake.clear()
            while self._pending:
                try:
                    await self._store_batch()
                except BackendUnavailable as exc:
                    log.warning(
                        "audit trail: %d entries wait for the backend (%s); retrying in %.2f s",
                        len(self._pending),
                        exc,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_MIN_S
            if not self._pending:
                self._idle.set()

    async def close(self) -> None:
        """Store what waits (for at most ``close_timeout_s``), then stop."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._close_timeout_s)
        await stop(writer)
        if self._pending:
            first = self._pending[0]
            log.error(
                "audit trail: %d entries could not be stored before shutdown "
                "(first: %s %s at %d ms)",
                len(self._pending),
                first.action,
                first.target,
                first.ts,
            )
