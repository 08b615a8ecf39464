"""The audit trail in this process's memory (one node): see
:class:`~fieldpush.backend.base.AuditLog`.

The event loop is the one writer: :meth:`MemoryAudit.append` chains and stores
without awaiting, so two appends never interleave. With a ``path`` (setting
``audit_file``) every entry is also appended to that JSONL file (one
canonical line per entry, written, flushed and fsynced before ``append``
returns: a blocking write of one batch, which the single-node memory backend
accepts), and :meth:`MemoryAudit.load` reads it back (when the backend is
made, so before the node listens), re-hashing the
whole chain: a file that does not verify (an edited, deleted or reordered
line, a torn last line) refuses the start, naming the first bad ``seq``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from fieldpush.audit.chain import (
    AuditDraft,
    AuditEntry,
    ChainError,
    Head,
    Unreadable,
    chain,
    parse_entry,
)
from fieldpush.errors import ConfigError

__all__ = ["AuditFileError", "MemoryAudit"]


class AuditFileError(ConfigError):
    """The ``audit_file`` does not verify; the message names the first bad seq."""


class MemoryAudit:
    """See the module docstring."""

    def __init__(self, path: str | None = None) -> None:
        self._path = Path(path) if path else None
        self._entries: list[AuditEntry] = []
        self._file: IO[str] | None = None

    def load(self) -> None:
        """Read and verify the file (if any) and open it for appending."""
        if self._path is None or self._file is not None:
            return
        head = Head()
        entries: list[AuditEntry] = []
        if self._path.exists():
            with self._path.open("r", encoding="ascii", errors="replace", newline="") as lines:
                for line in lines:
                    seq = head.size + 1
                    if not line.endswith("\n"):
                        raise AuditFileError(
                            f"{self._path}: seq {seq}: the last line is incomplete"
                        )
                    try:
                        entry = parse_entry(json.loads(line), head)
                    except ChainError as exc:
                        raise AuditFileError(f"{self._path}: {exc}") from exc
                    except (ValueError, RecursionError) as exc:
                        raise AuditFileError(f"{self._path}: seq {seq}: not JSON") from exc
                    entries.append(entry)
                    head = entry.head
        self._entries = entries
        self._file = self._path.open("a", encoding="ascii")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _head(self) -> Head:
        return self._entries[-1].head if self._entries else Head()

    async def append(self, drafts: list[AuditDraft]) -> list[AuditEntry]:
        entries = chain(self._head(), drafts)
        if self._file is not None and entries:
            self._file.write("".join(entry.line + "\n" for entry in entries))
            self._file.flush()
            os.fsync(self._file.fileno())
        self._entries.extend(entries)
        return entries

    async def read(self, from_seq: int, limit: int) -> list[AuditEntry | Unreadable]:
        start = max(from_seq, 1) - 1
        page: list[AuditEntry | Unreadable] = [*self._entries[start : start + max(limit, 0)]]
        return page  # the file is re-hashed at start: nothing in memory is Unreadable

    async def head(self) -> Head:
        return self._head()
