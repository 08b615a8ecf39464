"""The phone's side of drift digests (docs/sdk.md, "Drift"; docs/protocol.md 3.8).

:class:`Tally` keeps, in the :class:`~fieldpush_client.sync.SyncStore`'s
``meta`` table and in the same transactions as the records, the
:class:`~fieldpush_client.protocol.Digest` of each record type the store holds
(``digest:<type tag>``, sealed like the records): every stored, replaced or
dropped record adds and subtracts its hash, so a pull's digest costs one small
read per type. The store rebuilds them from the records once per opening
(:meth:`Tally.rebuild`, a scan), so that a file changed behind the SDK's back
(a restored backup, a lost write) is measured by what it really holds. A
record's hash covers its core fields: the fields that arrived only by pulls
of the ``batch`` data class (learned from those pulls,
:meth:`Tally.learn_batch`) are left out, as the server leaves them out.

:func:`plan_repairs` turns the server's answer (the digests of its buckets)
and what the phone holds into ``repair`` requests small enough for one frame.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from fieldpush_client.protocol import (
    BUCKETS,
    MAX_REPAIR_HELD,
    Digest,
    Repair,
    TypeDrift,
    bucket_of,
    record_hash,
)
from fieldpush_client.vault import RecordCipher, aad

__all__ = ["MAX_REPAIR_BYTES", "BucketTooLarge", "Tally", "differing_buckets", "plan_repairs"]

#: Most bytes of held ``(rid, hash)`` pairs in one ``repair`` (a frame is 64 KiB).
MAX_REPAIR_BYTES: Final = 40 * 1024
#: What one held pair costs on the wire besides its rid: ``"": "<16 hex>", ``.
_PAIR_BYTES: Final = 24
_BATCH: Final = "batch_fields"

#: Every record of the store: ``(type, rid, fields)``.
AllRecords = Callable[[], Iterator[tuple[str, str, dict[str, Any]]]]


class BucketTooLarge(Exception):
    """One bucket holds more than fits into a ``repair``: download the type again."""


class Tally:
    """See the module docstring. ``type_tag`` is the store's keyed tag of a
    type name; ``records`` iterates the store (to build the digests of a store
    at its first digest, and after a batch field is learned). Every
    method runs inside the caller's transaction, which calls :meth:`flush`
    before it commits (or :meth:`discard` when it rolls back)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        cipher: RecordCipher,
        type_tag: Callable[[str], bytes],
        records: AllRecords,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._type_tag = type_tag
        self._records = records
        self._batch: dict[str, frozenset[str]] | None = None
        self._pending: dict[str, Digest] = {}

    # ------------------------------------------------------------ digests

    def rebuild(self) -> None:
        """Every type's digest from the records held (a full scan)."""
        self._pending.clear()
        self._db.execute("DELETE FROM meta WHERE key LIKE 'digest:%'")
        totals: dict[str, Digest] = {}
        for record_type, rid, fields in self._records():
            totals[record_type] = totals.get(record_type, Digest()).add(
                self.hash_of(record_type, rid, fields)
            )
        for record_type, digest in totals.items():
            self._write(record_type, digest)

    def hash_of(self, record_type: str, rid: str, fields: dict[str, Any]) -> int:
        """A held record's hash: of its core fields."""
        batch = self._batch_fields().get(record_type, frozenset())
        return record_hash(rid, {k: v for k, v in fields.items() if k not in batch})

    def replaced(
        self,
        record_type: str,
        rid: str,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> None:
        """A record went from ``old`` to ``new`` (None: not held); written by
        :meth:`flush`, at the end of the transaction."""
        digest = self._pending.get(record_type)
        if digest is None:
            digest = self.of(record_type)
        if old is not None:
            digest = digest.remove(self.hash_of(record_type, rid, old))
        if new is not None:
            digest = digest.add(self.hash_of(record_type, rid, new))
        self._pending[record_type] = digest

    def flush(self) -> None:
        """Write the digests :meth:`replaced` changed (in the transaction)."""
        pending, self._pending = self._pending, {}
        for record_type, digest in pending.items():
            self._write(record_type, digest)

    def discard(self) -> None:
        """The transaction was rolled back: forget what :meth:`replaced` changed."""
        self._pending.clear()

    def forget(self, record_type: str | None) -> None:
        """The records of a type (None: every type) were dropped at once."""
        if record_type is None:
            self._pending.clear()
        else:
            self._pending.pop(record_type, None)
        if record_type is None:
            self._db.execute("DELETE FROM meta WHERE key LIKE 'digest:%'")
        else:
            self._db.execute("DELETE FROM meta WHERE key = ?", (self._key(record_type),))

    def of(self, record_type: str) -> Digest:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (self._key(record_type),)
        ).fetchone()
        if row is None:
            return Digest()
        payload = self._cipher.open(row[0], aad(b"digest", self._type_tag(record_type)))
        count, hashed = json.loads(payload)
        return Digest(int(count), int(hashed, 16))

    def _key(self, record_type: str) -> str:
        return "digest:" + self._type_tag(record_type).hex()

    def _write(self, record_type: str, digest: Digest) -> None:
        if digest.count == 0:
            self.forget(record_type)
            return
        payload = json.dumps([digest.count, digest.hex]).encode()
        sealed = self._cipher.seal(payload, aad(b"digest", self._type_tag(record_type)))
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", (self._key(record_type), sealed)
        )

    # ------------------------------------------------------------ batch fields

    def learn_batch(self, fields_by_type: dict[str, set[str]]) -> None:
        """Fields that arrived by a pull of the ``batch`` data class: left out
        of the hashes from now on (a new one rebuilds the digests)."""
        known = dict(self._batch_fields())
        grown = False
        for record_type, names in fields_by_type.items():
            have = known.get(record_type, frozenset())
            if not names <= have:
                known[record_type], grown = have | names, True
        if not grown:
            return
        payload = json.dumps({t: sorted(n) for t, n in sorted(known.items())}).encode()
        sealed = self._cipher.seal(payload, aad(b"batch-fields"))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_BATCH, sealed))
        self._batch = known
        self.rebuild()

    def batch_fields(self, record_type: str) -> frozenset[str]:
        """The fields of a type learned as batch data."""
        return self._batch_fields().get(record_type, frozenset())

    def _batch_fields(self) -> dict[str, frozenset[str]]:
        if self._batch is None:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (_BATCH,)).fetchone()
            raw = {} if row is None else json.loads(self._cipher.open(row[0], aad(b"batch-fields")))
            self._batch = {str(t): frozenset(names) for t, names in raw.items()}
        return self._batch


def differing_buckets(held: dict[str, int], theirs: TypeDrift) -> list[int]:
    """The buckets whose digest of ``held`` (rid: hash) is not the server's."""
    ours: dict[int, Digest] = {}
    for rid, hashed in held.items():
        bucket = bucket_of(rid)
        ours[bucket] = ours.get(bucket, Digest()).add(hashed)
    return [b for b in range(BUCKETS) if ours.get(b, Digest()) != theirs.buckets.get(b, Digest())]


def plan_repairs(held: dict[str, int], theirs: TypeDrift) -> Iterable[Repair]:
    """``repair`` requests of one type for the buckets that differ, each under
    :data:`MAX_REPAIR_BYTES` of held pairs. BucketTooLarge if one bucket alone
    does not fit."""
    by_bucket: dict[int, dict[str, int]] = {}
    for rid, hashed in held.items():
        by_bucket.setdefault(bucket_of(rid), {})[rid] = hashed
    buckets: set[int] = set()
    pairs: dict[str, int] = {}
    size = 0
    for bucket in differing_buckets(held, theirs):
        mine = by_bucket.get(bucket, {})
        cost = sum(len(rid.encode()) + _PAIR_BYTES for rid in mine)
        if cost > MAX_REPAIR_BYTES or len(mine) > MAX_REPAIR_HELD:
            raise BucketTooLarge(f"bucket {bucket} holds {len(mine)} records")
        if buckets and (size + cost > MAX_REPAIR_BYTES or len(pairs) + len(mine) > MAX_REPAIR_HELD):
            yield Repair(frozenset(buckets), pairs)
            buckets, pairs, size = set(), {}, 0
        buckets.add(bucket)
        pairs.update(mine)
        size += cost
    if buckets:
        yield Repair(frozenset(buckets), pairs)
