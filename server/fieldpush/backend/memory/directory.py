"""The user directory in process memory: the embedded backend's SCIM store.

Nothing in a method awaits between its read and its write, so each call is
atomic with respect to every other request of the process (the event loop's
single thread). Guarantees: those of :class:`~fieldpush.backend.directory.Directory`.
"""

from __future__ import annotations

import bisect
import dataclasses

from fieldpush.backend.directory import (
    DirectoryEntry,
    NameTaken,
    PutResult,
    VersionMismatch,
    Written,
)

__all__ = ["MemoryDirectory"]


class MemoryDirectory:
    """See the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[str, DirectoryEntry] = {}
        #: user key -> id.
        self._keys: dict[str, str] = {}
        #: Every id, sorted (the listing order).
        self._ids: list[str] = []

    async def get(self, entry_id: str) -> DirectoryEntry | None:
        return self._entries.get(entry_id)

    async def by_user_key(self, user_key: str) -> DirectoryEntry | None:
        entry_id = self._keys.get(user_key)
        return None if entry_id is None else self._entries[entry_id]

    async def count(self) -> int:
        return len(self._ids)

    async def page(self, offset: int, limit: int) -> list[DirectoryEntry]:
        return [self._entries[i] for i in self._ids[offset : offset + limit]]

    async def put(self, entry: DirectoryEntry, expected_version: int) -> PutResult:
        current = self._entries.get(entry.id)
        version = current.version if current is not None else 0
        if version != expected_version:
            return VersionMismatch(version)
        holder = self._keys.get(entry.user_key)
        if holder is not None and holder != entry.id:
            return NameTaken(holder)
        created = current.created_ms if current is not None else entry.created_ms
        stored = dataclasses.replace(entry, version=version + 1, created_ms=created)
        if current is None:
            bisect.insort(self._ids, entry.id)
        else:
            del self._keys[current.user_key]
        self._entries[entry.id] = stored
        self._keys[entry.user_key] = entry.id
        return Written(stored)

    async def delete(self, entry_id: str, expected_version: int | None) -> bool:
        current = self._entries.get(entry_id)
        if current is None or expected_version not in (None, current.version):
            return False
        del self._entries[entry_id]
        del self._keys[current.user_key]
        self._ids.pop(bisect.bisect_left(self._ids, entry_id))
        return True
