"""Writes Ed25519-signed checkpoints of the audit trail to a directory.

A checkpoint (:mod:`fieldpush.audit.checkpoint`) is written:

- after every ``audit_checkpoint_entries`` entries this node stored;
- every ``audit_checkpoint_s`` seconds when the trail grew since the last one
  (so a trail that went idle is covered within that time, on whichever node
  wrote its last entries);
- at shutdown, when the trail grew since the last one.

Its ``size`` and ``head`` are the backend's head at that moment (the whole
cluster's trail, not only this node's entries). Each is one file
``<dir>/checkpoint-<size, 12 digits>-<ts>-<node>.json``, written to a
temporary name, fsynced and renamed, so a reader never sees half of one.
Point the directory at another disk, a WORM mount or a synced bucket:
checkpoints are only worth something where whoever can edit the trail
cannot edit them.

A failure to write one (the directory is full or gone, the backend is down)
is logged at ERROR and tried again at the next occasion; it never stops the
node nor the audited actions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fieldpush.audit.chain import AuditEntry, Head
from fieldpush.audit.checkpoint import Checkpoint, sign
from fieldpush.backend.base import AuditLog
from fieldpush.errors import BackendUnavailable
from fieldpush.tasks import stop

__all__ = ["Checkpointer"]

log = logging.getLogger("fieldpush.audit")


class Checkpointer:
    """See the module docstring."""

    def __init__(
        self,
        audit: AuditLog,
        key: Ed25519PrivateKey,
        directory: str,
        *,
        node: str,
        every_entries: int,
        every_s: float,
    ) -> None:
        self._audit = audit
        self._key = key
        self._dir = Path(directory)
        self._node = node
        self._every_entries = every_entries
        self._every_s = every_s
        self._since = 0
        self._last: Head | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        #: Checkpoints written by this node (for tests and metrics).
        self.written: list[Checkpoint] = []
        #: ``time.time()`` when the trail last had a checkpoint of its head
        #: (written now, or the head had not moved since the last one).
        self.current_at = time.time()

    @property
    def age_s(self) -> float:
        """Seconds since the trail's head last had a checkpoint (``current_at``)."""
        return max(0.0, time.time() - self.current_at)

    def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(
            self._every_interval(), name="audit-checkpoints"
        )

    def stored(self, entries: list[AuditEntry]) -> None:
        """The recorder stored ``entries`` (its ``on_stored`` listener)."""
        self._since += len(entries)
        if self._since >= self._every_entries and self._writing is None:
            self._since = 0
            self._writing = asyncio.get_running_loop().create_task(self._write_once())

    async def _write_once(self) -> None:
        try:
            await self.checkpoint()
        finally:
            self._writing = None

    async def checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint of the current head if it moved since the last one."""
        try:
            head = await self._audit.head()
        except BackendUnavailable as exc:
            log.error("audit checkpoint not written: %s", exc)
            return None
        if head == self._last:
            self.current_at = time.time()
            return None
        ts = time.time_ns() // 1_000_000
        checkpoint = sign(self._key, head, ts)
        name = f"checkpoint-{head.size:012d}-{ts}-{self._node}.json"
        try:
            await asyncio.to_thread(self._write, name, checkpoint)
        except OSError as exc:
            log.error("audit checkpoint not written to %s: %s", self._dir, exc)
            return None
        self._last = head
        self.current_at = time.time()
        self.written.append(checkpoint)
        return checkpoint

    def _write(self, name: str, checkpoint: Checkpoint) -> None:
        temporary = self._dir / f".{name}.tmp"
        with temporary.open("w", encoding="ascii") as out:
            json.dump(checkpoint.as_dict(), out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self._dir / name)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.checkpoint()

    async def close(self) -> None:
        """Stop, after a last checkpoint if the trail grew."""
        await stop(self._task, self._writing)
        self._task = self._writing = None
        await self.checkpoint()
