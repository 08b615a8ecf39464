"""Delta-sync records on Redis, shared by every node.

Keys (``<p>`` is the key prefix):

- ``<p>:sync:rec:<type>:<rid>`` hash ``v`` (version: commits so far), ``d``
  (the encoded record state);
- ``<p>:sync:ids:<type>`` sorted set of the type's record ids (lexical order,
  for the full download);
- ``<p>:sync:file:<file id>`` set of the record keys ``<type>:<rid>`` that
  referenced the file (``RecordWrite.files``; never trimmed: a superset);
- ``<p>:sync:res:<result key>`` a mutation's result, for replays of its
  ``mid``; expires after ``results_ttl_s``;
- ``<p>:sync:log`` stream: the change log, entry fields ``c`` (the entry) and
  ``n`` (its number, from the counter ``<p>:sync:log:n``: 1, 2, ... without
  holes); trimmed to ``log_max_entries`` and ``log_max_age_s``
  (approximately, whole stream nodes); ``<p>:sync:log:e`` its epoch, set by
  the first commit. Positions are ``<epoch>:<stream id>:<n>``.

A batch's commit is one Lua script (``sync_commit.lua``): per write it checks
the kept result (a replay), compares the record's version (compare-and-set),
writes the record, the result and the log entries, all or nothing, in the
batch's order. Redis keeps no record of trimmed ids, so reading the log
compares numbers: when the oldest retained entry's ``n`` is more than one past
the reader's, entries after the reader were trimmed and it must resync; so it
must when the epoch changed (the log was lost with a flushed Redis).
"""

from __future__ import annotations

import re
import secrets
import time

from fieldpush.backend.base import (
    Applied,
    CommitStatus,
    RecordWrite,
    Replayed,
    Stale,
    StoredRecord,
)
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script
from fieldpush.errors import InvalidPosition

__all__ = ["RedisRecords"]

#: A log position ``<epoch>:<ms>-<seq>:<n>``, checked before it reaches Redis
#: (it may come from a forged cursor): ASCII digits, at most 19 of them, so
#: every number fits the 64 bits of a stream id.
_POSITION = re.compile(r"([^:]*):([0-9]{1,19}-[0-9]{1,19}):([0-9]{1,19})")

_COMMIT = script("sync_commit.lua")
_READ = script("sync_read.lua")
_SCAN = script("sync_scan.lua")


class RedisRecords:
    """See the module docstring."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        *,
        results_ttl_s: float,
        log_max_entries: int,
        log_max_age_s: float,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._log = f"{prefix}:sync:log"
        self._results_ttl_ms = int(results_ttl_s * 1000)
        self._log_max = log_max_entries
        self._log_max_age_ms = int(log_max_age_s * 1000)

    async def load(
        self, records: list[str], result_keys: list[str]
    ) -> tuple[list[StoredRecord | None], list[bytes | None]]:
        prefix = self._prefix
        commands: list[tuple[object, ...]] = [
            (b"HMGET", f"{prefix}:sync:rec:{key}", b"v", b"d") for key in records
        ]
        commands += [(b"GET", f"{prefix}:sync:res:{key}") for key in result_keys]
        replies = await self._client.pipeline(commands)
        found = [
            StoredRecord(int(version), blob) if version is not None else None
            for version, blob in replies[: len(records)]
        ]
        return found, replies[len(records) :]

    async def commit(self, writes: list[RecordWrite]) -> list[CommitStatus]:
        horizon = time.time_ns() // 1_000_000 - self._log_max_age_ms
        args: list[object] = [
            self._prefix,
            self._results_ttl_ms,
            self._log_max,
            f"{horizon}-0" if horizon > 0 else "",
            secrets.token_hex(4),
        ]
        for write in writes:
            args += [
                write.result_key or "",
                write.result,
                write.record or "",
                write.expected_version,
                write.blob,
                len(write.log),
                *write.log,
                len(write.files),
                *write.files,
            ]
        return [_status(reply) for reply in await self._client.run(_COMMIT, [], args)]

    async def log_top(self) -> str:
        epoch, newest = await self._client.pipeline(
            [(b"GET", f"{self._log}:e"), (b"XREVRANGE", self._log, b"+", b"-", b"COUNT", b"1")],
        )
        if not newest:
            return f"{(epoch or b'').decode()}:0-0:0"
        entry_id, fields = newest[0]
        return f"{epoch.decode()}:{entry_id.decode()}:{fields[3].decode()}"

    async def read_log(self, after: str | None, limit: int) -> tuple[list[tuple[str, bytes]], bool]:
        found = _POSITION.fullmatch(after if after is not None else ":0-0:0")
        if found is None:
            raise InvalidPosition(f"not a log position: {after!r}")
        epoch, entry_id, number = found.groups()
        reply = await self._client.run(_READ, [self._log], [epoch, entry_id, number, limit])
        current = reply[1].decode()
        entries = [
            (f"{current}:{reply[i].decode()}:{reply[i + 1].decode()}", reply[i + 2])
            for i in range(2, len(reply), 3)
        ]
        return entries, reply[0] == 1 and after is not None

    async def scan(
        self, record_type: str, after_rid: str, limit: int
    ) -> list[tuple[str, StoredRecord]]:
        prefix = self._prefix
        reply = await self._client.run(
            _SCAN,
            [f"{prefix}:sync:ids:{record_type}"],
            [f"{prefix}:sync:rec:{record_type}:", after_rid, limit],
        )
        return [
            (reply[i].decode(), StoredRecord(int(reply[i + 1]), reply[i + 2]))
            for i in range(0, len(reply), 3)
        ]

    async def file_records(self, file_id: str) -> list[str]:
        members = await self._client.execute(b"SMEMBERS", f"{self._prefix}:sync:file:{file_id}")
        return sorted(member.decode() for member in members)


def _status(reply: int | bytes) -> CommitStatus:
    """One write's status from ``sync_commit.lua``'s reply: 0 (applied), -1
    (stale) or the kept result (a replay)."""
    if isinstance(reply, bytes):
        return Replayed(reply)
    return Applied() if reply == 0 else Stale()
