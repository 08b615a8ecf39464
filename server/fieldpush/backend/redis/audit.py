"""The audit trail on Redis, shared by every node: see
:class:`~fieldpush.backend.base.AuditLog`.

Keys (``<p>`` is the key prefix):

- ``<p>:audit`` list: the entries' canonical lines, ``seq`` 1 at index 0;
  never trimmed (no ``LTRIM``, no TTL);
- ``<p>:audit:head`` string ``<size> <hash>``: the last entry.

**Who chains.** Redis's Lua has SHA-1 (``redis.sha1hex``) but no SHA-256, so
the node chains: it reads the head, computes seq, prev and hash of its batch
in Python (:func:`~fieldpush.audit.chain.chain`) and runs ``audit_append.lua``,
which stores the batch only if the head is still the one it chained after (a
compare-and-set), and else answers the current head, after which the node
re-chains and retries. Redis runs one script at a time, so the script is the
one writer that decides ``seq`` and ``prev``; two nodes appending at once
produce one unbroken chain (``tests/backend/test_audit.py``). A pure-Lua
SHA-256 was rejected: a few hundred lines of bit arithmetic to keep correct
inside Redis, and it would run in Redis's single thread, slowing every other
command, where the CAS costs one extra round trip only when two nodes collide.
The node caches the head it last wrote, so the common case is one round trip.
"""

from __future__ import annotations

import json

from fieldpush.audit.chain import (
    AuditDraft,
    AuditEntry,
    ChainError,
    Head,
    Unreadable,
    chain,
    entry_of,
)
from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.ledger import script
from fieldpush.errors import BackendUnavailable

__all__ = ["RedisAudit"]

_APPEND = script("audit_append.lua")

#: Compare-and-set attempts before giving up (each loses only to another
#: node's successful append, so this many in a row means a storm of writers).
MAX_ATTEMPTS = 100


def _head(raw: bytes | str | None) -> Head:
    if raw is None:
        return Head()
    text = raw.decode() if isinstance(raw, bytes) else raw
    size, _, digest = text.partition(" ")
    return Head(int(size), digest)


def _text(head: Head) -> str:
    return f"{head.size} {head.hash}"


class RedisAudit:
    """See the module docstring."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._list = f"{prefix}:audit"
        self._head_key = f"{prefix}:audit:head"
        self._known: Head | None = None

    async def append(self, drafts: list[AuditDraft]) -> list[AuditEntry]:
        if not drafts:
            return []
        head = self._known if self._known is not None else await self.head()
        for _ in range(MAX_ATTEMPTS):
            entries = chain(head, drafts)
            args = [self._list, self._head_key, _text(head), _text(entries[-1].head)]
            reply = await self._client.run(_APPEND, [], [*args, *(e.line for e in entries)])
            if int(reply[0]) == 1:
                self._known = entries[-1].head
                return entries
            head = _head(reply[1])
        self._known = None
        raise BackendUnavailable("the audit trail's head kept moving; nothing stored")

    async def read(self, from_seq: int, limit: int) -> list[AuditEntry | Unreadable]:
        if limit <= 0:
            return []
        start = max(from_seq, 1) - 1
        lines = await self._client.execute(b"LRANGE", self._list, start, start + limit - 1)
        entries: list[AuditEntry | Unreadable] = []
        for seq, line in enumerate(lines, start + 1):
            try:
                entries.append(entry_of(json.loads(line), seq))
            except (ValueError, RecursionError) as exc:
                text = line.decode("utf-8", "replace")
                entries.append(Unreadable(seq, text, f"not JSON: {exc}"))
            except ChainError as exc:
                entries.append(Unreadable(seq, line.decode("utf-8", "replace"), exc.reason))
        return entries

    async def head(self) -> Head:
        return _head(await self._client.execute(b"GET", self._head_key))
