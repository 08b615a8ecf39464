"""The user directory on Redis, shared by every node (SCIM provisioning).

Keys (``<p>`` is the key prefix):

- ``<p>:scim:u:<id>`` hash ``n`` (userName), ``k`` (user key), ``v`` (version),
  ``c`` and ``m`` (created and modified, ms), ``d`` (the SCIM document);
- ``<p>:scim:keys`` hash user key -> id (the uniqueness index);
- ``<p>:scim:ids`` sorted set of every id, all with score 0 (so in byte order,
  which for UTF-8 is code point order): the listing order.

A put is one Lua script (``scim_put.lua``): it compares the version, checks the
user key's holder, and writes the entry and both indexes, all or nothing; a
delete is ``scim_delete.lua``. Reads of several entries (a page, a user key)
are ``scim_page.lua``, one round trip. Guarantees: those of
:class:`~fieldpush.backend.directory.Directory`.
"""

from __future__ import annotations

from typing import Any

from fieldpush.backend.directory import (
    DirectoryEntry,
    NameTaken,
    PutResult,
    VersionMismatch,
    Written,
)
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script

__all__ = ["RedisDirectory"]

_PUT = script("scim_put.lua")
_DELETE = script("scim_delete.lua")
_PAGE = script("scim_page.lua")


class RedisDirectory:
    """See the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._entry = f"{prefix}:scim:u:"
        self._keys = f"{prefix}:scim:keys"
        self._ids = f"{prefix}:scim:ids"

    async def get(self, entry_id: str) -> DirectoryEntry | None:
        reply = await self._client.execute(
            b"HMGET", self._entry + entry_id, b"n", b"k", b"v", b"c", b"m", b"d"
        )
        return None if reply[2] is None else _entry([entry_id.encode(), *reply])

    async def by_user_key(self, user_key: str) -> DirectoryEntry | None:
        found = await self._read(["key", user_key])
        return found[0] if found else None

    async def count(self) -> int:
        count: int = await self._client.execute(b"ZCARD", self._ids)
        return count

    async def page(self, offset: int, limit: int) -> list[DirectoryEntry]:
        return await self._read(["page", offset, limit]) if limit > 0 else []

    async def _read(self, args: list[Any]) -> list[DirectoryEntry]:
        reply = await self._client.run(_PAGE, [self._ids, self._keys], [self._entry, *args])
        return [_entry(reply[i : i + 7]) for i in range(0, len(reply), 7)]

    async def put(self, entry: DirectoryEntry, expected_version: int) -> PutResult:
        reply = await self._client.run(
            _PUT,
            [self._entry + entry.id, self._keys, self._ids],
            [
                entry.id,
                entry.user_name,
                entry.user_key,
                expected_version,
                entry.created_ms,
                entry.modified_ms,
                entry.document,
            ],
        )
        status = reply[0]
        if status == b"version":
            return VersionMismatch(int(reply[1]))
        if status == b"taken":
            return NameTaken(reply[1].decode())
        return Written(
            DirectoryEntry(
                entry.id,
                entry.user_name,
                entry.user_key,
                int(reply[1]),
                int(reply[2]),
                entry.modified_ms,
                entry.document,
            )
        )

    async def delete(self, entry_id: str, expected_version: int | None) -> bool:
        expected = "" if expected_version is None else expected_version
        reply = await self._client.run(
            _DELETE, [self._entry + entry_id, self._keys, self._ids], [entry_id, expected]
        )
        return bool(reply == 1)


def _entry(fields: list[bytes]) -> DirectoryEntry:
    """An entry from ``[id, n, k, v, c, m, d]``."""
    entry_id, name, key, version, created, modified, document = fields
    return DirectoryEntry(
        entry_id.decode(),
        name.decode(),
        key.decode(),
        int(version),
        int(created),
        int(modified),
        document,
    )
