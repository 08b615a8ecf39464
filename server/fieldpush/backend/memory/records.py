"""Delta-sync records in process memory: the embedded backend's record store.

Everything runs on the event loop without awaiting in between, so each
:meth:`MemoryRecords.commit` is atomic with respect to every other request
of the process (the "lock in memory" of the architecture guide is the event loop's
single thread). Guarantees: those of :class:`~fieldpush.backend.base.RecordStore`.
"""

from __future__ import annotations

import bisect
import re
import secrets
import time
from collections import deque

from fieldpush.backend.base import (
    Applied,
    CommitStatus,
    RecordWrite,
    Replayed,
    Stale,
    StoredRecord,
)
from fieldpush.errors import InvalidPosition

__all__ = ["MemoryRecords"]

#: A log position: ``<epoch>:<ms>-<seq>`` (ASCII digits, bounded: it may come
#: from a forged cursor).
_POSITION = re.compile(r"([^:]*):([0-9]{1,20})-([0-9]{1,20})")


class MemoryRecords:
    """See the module docstring."""

    def __init__(self, *, results_ttl_s: float, log_max_entries: int, log_max_age_s: float) -> None:
        self._results_ttl_ms = int(results_ttl_s * 1000)
        self._log_max = log_max_entries
        self._log_max_age_ms = int(log_max_age_s * 1000)
        self._records: dict[str, StoredRecord] = {}
        #: Record ids per type, sorted.
        self._ids: dict[str, list[str]] = {}
        #: result key -> (expiry ms, result); insertion order is expiry order.
        self._results: dict[str, tuple[int, bytes]] = {}
        #: file id -> the record keys that referenced it.
        self._files: dict[str, set[str]] = {}
        self._log: deque[tuple[tuple[int, int], bytes]] = deque()
        #: Positions are ``<epoch>:<ms>-<seq>``: a position of an earlier process
        #: (whose records are gone) is recognised, and its reader resyncs.
        self._epoch = secrets.token_hex(4)
        self._top = (0, 0)
        #: Position of the newest entry trimmed from the log.
        self._trimmed = (0, 0)

    async def load(
        self, records: list[str], result_keys: list[str]
    ) -> tuple[list[StoredRecord | None], list[bytes | None]]:
        now = _now_ms()
        results = []
        for key in result_keys:
            kept = self._results.get(key)
            results.append(kept[1] if kept is not None and kept[0] > now else None)
        return [self._records.get(key) for key in records], results

    async def commit(self, writes: list[RecordWrite]) -> list[CommitStatus]:
        now = _now_ms()
        self._expire(now)
        statuses: list[CommitStatus] = []
        stale: set[str] = set()
        for write in writes:
            kept = self._results.get(write.result_key) if write.result_key else None
            if kept is not None and kept[0] > now:
                statuses.append(Replayed(kept[1]))
                if write.record:
                    stale.add(write.record)
                continue
            if write.record:
                current = self._records.get(write.record)
                version = current.version if current else 0
                if write.record in stale or version != write.expected_version:
                    stale.add(write.record)
                    statuses.append(Stale())
                    continue
                if write.blob:
                    self._records[write.record] = StoredRecord(version + 1, write.blob)
                if current is None and write.blob:
                    record_type, _, rid = write.record.partition(":")
                    ids = self._ids.setdefault(record_type, [])
                    bisect.insort(ids, rid)
                for file_id in write.files:
                    self._files.setdefault(file_id, set()).add(write.record)
            if write.result_key:
                self._results[write.result_key] = (now + self._results_ttl_ms, write.result)
            for entry in write.log:
                self._append(now, entry)
            statuses.append(Applied())
        return statuses

    def _append(self, now: int, entry: bytes) -> None:
        top = self._top
        self._top = (now, 0) if now > top[0] else (top[0], top[1] + 1)
        self._log.append((self._top, entry))
        horizon = now - self._log_max_age_ms
        while self._log and (len(self._log) > self._log_max or self._log[0][0][0] < horizon):
            self._trimmed = self._log.popleft()[0]

    def _expire(self, now: int) -> None:
        results = self._results
        while results:
            key = next(iter(results))
            if results[key][0] > now:
                break
            del results[key]

    def _text(self, position: tuple[int, int]) -> str:
        return f"{self._epoch}:{position[0]}-{position[1]}"

    def _position(self, text: str) -> tuple[int, int] | None:
        """``(ms, seq)`` of a position of this process; None for another
        process's; InvalidPosition if it is not ``<epoch>:<ms>-<seq>``."""
        found = _POSITION.fullmatch(text)
        if found is None:
            raise InvalidPosition(f"not a log position: {text!r}")
        epoch, ms, seq = found.groups()
        return (int(ms), int(seq)) if epoch == self._epoch else None

    async def log_top(self) -> str:
        return self._text(self._top)

    async def read_log(self, after: str | None, limit: int) -> tuple[list[tuple[str, bytes]], bool]:
        position = self._position(after) if after is not None else self._trimmed
        expired = position is None or position < self._trimmed
        position = position or self._trimmed
        log = self._log
        start = bisect.bisect_right(log, max(position, self._trimmed), key=lambda item: item[0])
        entries = [
            (self._text(pos), entry)
            for pos, entry in (log[i] for i in range(start, min(start + limit, len(log))))
        ]
        return entries, expired

    async def scan(
        self, record_type: str, after_rid: str, limit: int
    ) -> list[tuple[str, StoredRecord]]:
        ids = self._ids.get(record_type, [])
        start = bisect.bisect_right(ids, after_rid)
        return [(rid, self._records[f"{record_type}:{rid}"]) for rid in ids[start : start + limit]]

    async def file_records(self, file_id: str) -> list[str]:
        return sorted(self._files.get(file_id, ()))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
