"""Offline edits and a local copy of the records: the SDK side of delta sync.

:class:`SyncStore` is one SQLite file (it survives app restarts) holding

- the **server copy** of every record the phone may read, as the last pull
  or mutation result left it, and the pull cursor;
- the **offline queue**: edits in the order they were made, each with its
  ``mid`` and the device's HLC stamp, kept until the server has answered it;
- the device's hybrid logical clock.

The file is encrypted under the application's key (``key=``): every record
value and every queued edit is an AES-256-GCM blob bound to its row
(:mod:`fieldpush_client.vault`), and rows are found by keyed HMAC tags of
their type and id, so neither what a user typed nor which records the phone
holds can be read from the file. In clear: the pull cursor, the device's clock
(the time of its last edit), each queued edit's random ``mid``, and how many
records and edits there are and their sizes.

The application reads :meth:`SyncStore.record` / :meth:`SyncStore.records`:
the server copy with the queued edits laid over it, so an edit shows at once
and disappears again if the server refuses it.

:class:`SyncClient` moves data over a :class:`~fieldpush_client.client.PushClient`:
:meth:`~SyncClient.flush` sends the queue in order (``mutate``), and removes an
entry only in the same SQLite transaction that stores its answer, so a phone
killed mid-flush sends the rest again with the same ``mid``\\ s and the server
answers them without applying anything twice; :meth:`~SyncClient.pull` pages
through ``changes`` and keeps the cursor; a ``resync`` error starts a full
download. With ``auto=True`` it does both after every ``welcome``.

Every call on the store is synchronous and quick (a local SQLite transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import EllipsisType
from typing import Any

from fieldpush_client.backoff import backoff_delays
from fieldpush_client.client import PushClient
from fieldpush_client.drift import BucketTooLarge, Tally, plan_repairs
from fieldpush_client.errors import (
    PublishError,
    RequestError,
    StoreError,
    StoreIntegrityError,
    StoreKeyError,
)
from fieldpush_client.protocol import (
    CORE_CLASS,
    Change,
    Changes,
    Digest,
    DriftReport,
    ErrorCode,
    Mutate,
    Mutated,
    Mutation,
    MutationResult,
    Pull,
)
from fieldpush_client.upload import check_answer, worth_retrying
from fieldpush_client.vault import KeySource, RecordCipher, aad, resolve_key

__all__ = ["NeedsAttention", "QueuedEdit", "SyncClient", "SyncStore"]

log = logging.getLogger("fieldpush.sdk.sync")

#: ``PRAGMA user_version`` of an encrypted store (0: a plaintext store of SDK 0.1, or new).
FORMAT = 1
#: Refused edits kept for the user (added to format 1; created when missing).
_ATTENTION_TABLE = """CREATE TABLE IF NOT EXISTS attention (
    mid TEXT PRIMARY KEY, type_tag BLOB NOT NULL, rid_tag BLOB NOT NULL, sealed BLOB NOT NULL
)"""
#: Statement by statement: ``executescript`` would commit the open transaction first.
_SCHEMA = (
    """CREATE TABLE records (
        type_tag BLOB NOT NULL, rid_tag BLOB NOT NULL, sealed BLOB NOT NULL,
        PRIMARY KEY (type_tag, rid_tag)
    ) WITHOUT ROWID""",
    """CREATE TABLE queue (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, mid TEXT NOT NULL UNIQUE,
        type_tag BLOB NOT NULL, rid_tag BLOB NOT NULL, sealed BLOB NOT NULL
    )""",
    "CREATE INDEX queue_by_record ON queue (type_tag, rid_tag, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL)",
    _ATTENTION_TABLE,
)
_LEGACY_TABLES = {"records", "queue", "meta"}
#: What the server's answer says about a field it did not refuse.
_TAKEN = frozenset({"applied", "conflict"})
#: The plaintext sealed at creation: a wrong key fails to open it before anything is read.
_KEY_CHECK = b"fieldpush store key check"
#: Most bytes of mutations sent in one ``mutate`` (the server's frame limit is 64 KiB).
MAX_BATCH_BYTES = 48 * 1024
#: First wait before sending a batch again that the server refused as ``rate_limited``.
RATE_LIMIT_WAIT_S = 0.25


@dataclass(frozen=True, slots=True)
class QueuedEdit(Mutation):
    """An edit waiting for the server: the :class:`~fieldpush_client.protocol.Mutation`
    it is sent as (``fields`` None deletes the record)."""

    def as_mutation(self) -> dict[str, Any]:
        """The edit as an item of ``mutate.mutations`` (:meth:`to_wire`)."""
        return self.to_wire()


@dataclass(frozen=True, slots=True)
class NeedsAttention:
    """An edit the server refused, kept with what the user typed until the
    application resends it fixed (:meth:`SyncStore.resend`) or the user
    drops it (:meth:`SyncStore.dismiss`).

    ``fields``: the refused fields with the values typed (None: a refused
    delete); the fields of the same edit that were applied are not here.
    ``reason`` and ``message``: the server's (``validation`` with the
    offending field named, ``field_locked``, ``mdm_owned``, ``not_found``,
    ``forbidden``); ``outcomes``: each field's own outcome, when the server
    gave them."""

    mid: str
    type: str
    rid: str
    fields: dict[str, Any] | None
    reason: str | None
    message: str | None
    outcomes: dict[str, str]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SyncStore:
    """See the module docstring. ``path`` is the SQLite file (``":memory:"`` for tests).

    ``key`` is the store key: 32 bytes, or a synchronous callable returning
    them (a lookup in the platform keystore), called once, here. Every record
    value and every queued edit is sealed with it (:mod:`fieldpush_client.vault`;
    what stays in clear: docs/sdk.md, "What the file holds"). A new file is
    created under that key; an existing one opens only with the key it was
    created with (:class:`~fieldpush_client.errors.StoreKeyError`, ``reason``
    ``"wrong_key"``, before anything is read). A plaintext store written by an
    SDK without encryption is encrypted in place, once, keeping its queue.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        key: KeySource,
        wall_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._cipher = RecordCipher(resolve_key(key))
        self._type_tags: dict[str, bytes] = {}
        self._wall_ms = wall_ms
        self._path = str(path)
        self._db = sqlite3.connect(self._path, isolation_level=None)
        self._tally = Tally(self._db, self._cipher, self._type_tag, self._all_records)
        self._digests_built = False
        try:
            # Freed pages are zeroed: no old value lingers in the file's free space.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if self._open_format(str(path)):
                self._db.execute("VACUUM")  # rewrite every page: the plaintext ones go
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def vault(self) -> tuple[sqlite3.Connection, RecordCipher]:
        """The SQLite connection and the cipher, for the SDK's own tables in
        this file (:mod:`fieldpush_client.files`): what they keep is sealed
        the same way, and :meth:`erase` deletes it with the rest."""
        return self._db, self._cipher

    def erase(self) -> None:
        """Remote wipe (docs/protocol.md 1.17): forget the key, close, and
        delete the file with its ``-wal``, ``-shm`` and ``-journal``
        companions. The key itself lives where the application keeps it
        (the platform keystore): delete it there too. Pass this as (part of)
        ``PushClient(on_wipe=...)``. The store is unusable afterwards."""
        self._cipher = RecordCipher(bytes(32))  # drop the store's reference to the key
        self._db.close()
        if self._path == ":memory:":
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path + suffix)

    # ------------------------------------------------------------ format and key

    def _open_format(self, path: str) -> bool:
        """Create, check or migrate the file; True if plaintext was encrypted in place."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            tables = {
                str(name)
                for (name,) in self._db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            }
            if version == FORMAT:
                self._check_key()
                self._db.execute(_ATTENTION_TABLE)
                return False
            if version != 0:
                raise StoreError(
                    f"{path}: store format {version} is not one this SDK knows ({FORMAT})"
                )
            if not tables:
                self._create_tables()
                self._write_key_check()
                return False
            if tables != _LEGACY_TABLES:
                raise StoreError(f"{path}: not a fieldpush store (tables {sorted(tables)})")
            self._encrypt_legacy(path)
            return True

    def _create_tables(self) -> None:
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _write_key_check(self) -> None:
        sealed = self._cipher.seal(_KEY_CHECK, aad(b"key-check"))
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('key_check', ?)", (sealed,))
        self._db.execute(f"PRAGMA user_version = {FORMAT}")

    def _check_key(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        if row is None:
            raise StoreIntegrityError("the store's key check is missing")
        try:
            plain = self._cipher.open(row[0], aad(b"key-check"))
        except StoreIntegrityError as exc:
            raise StoreKeyError(
                "this store was created with another key (nothing was read):"
                " use the key it was created with, or erase it and download again",
                reason="wrong_key",
            ) from exc
        if plain != _KEY_CHECK:
            raise StoreIntegrityError("the store's key check holds another value")

    def _encrypt_legacy(self, path: str) -> None:
        """Seal the rows of a plaintext store (SDK 0.1) in place, in this transaction."""
        records = self._db.execute("SELECT type, rid, fields FROM records").fetchall()
        queue = self._db.execute(
            "SELECT mid, type, rid, fields, wall_ms, counter FROM queue ORDER BY seq"
        ).fetchall()
        self._db.execute("DROP TABLE records")
        self._db.execute("DROP TABLE queue")
        self._create_tables()
        for record_type, rid, fields in records:
            self._put(record_type, rid, json.loads(fields))
        for mid, record_type, rid, fields, wall, counter in queue:
            edit = QueuedEdit(
                mid,
                record_type,
                rid,
                None if fields is None else json.loads(fields),
                (wall, counter),
            )
            self._queue(edit)
        self._write_key_check()
        self._tally.flush()
        log.warning(
            "fieldpush store %s was not encrypted: sealed %d records and %d queued edits in place",
            path,
            len(records),
            len(queue),
        )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction of records: their types' digests are
        written in it, before it commits (forgotten if it rolls back)."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield
                self._tally.flush()
        except BaseException:
            self._tally.discard()
            raise

    def _tags(self, record_type: str, rid: str) -> tuple[bytes, bytes]:
        return self._type_tag(record_type), self._cipher.tag("record", record_type, rid)

    def _type_tag(self, record_type: str) -> bytes:
        tag = self._type_tags.get(record_type)
        if tag is None:
            tag = self._type_tags[record_type] = self._cipher.tag("type", record_type)
        return tag

    # ------------------------------------------------------------ meta

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def cursor(self) -> str | None:
        """Where the next pull of every type continues (None: a full
        download); :meth:`cursor_for` gives a type set's."""
        return self.cursor_for(None)

    def _tick(self) -> tuple[int, int]:
        """The device's HLC: after every stamp it issued, never behind the clock."""
        last = json.loads(self._meta("hlc") or "[0, 0]")
        wall = self._wall_ms()
        stamp = (wall, 0) if wall > last[0] else (last[0], last[1] + 1)
        self._set_meta("hlc", json.dumps(stamp))
        return stamp

    # ------------------------------------------------------------ edits

    def edit(self, record_type: str, rid: str, fields: dict[str, Any] | None) -> QueuedEdit:
        """Queue an edit (``fields`` None: delete); the local view shows it at once."""
        if fields is not None and not fields:
            raise ValueError("an edit needs at least one field (or None to delete)")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            edit = QueuedEdit(uuid.uuid4().hex, record_type, rid, fields, self._tick())
            self._queue(edit)
        return edit

    def _queue(self, edit: QueuedEdit) -> None:
        type_tag, rid_tag = self._tags(edit.type, edit.rid)
        payload = json.dumps([edit.type, edit.rid, edit.fields, *edit.hlc]).encode()
        sealed = self._cipher.seal(payload, aad(b"mutation", edit.mid.encode(), type_tag, rid_tag))
        self._db.execute(
            "INSERT INTO queue (mid, type_tag, rid_tag, sealed) VALUES (?, ?, ?, ?)",
            (edit.mid, type_tag, rid_tag, sealed),
        )

    def _queued_edit(self, mid: str, type_tag: bytes, rid_tag: bytes, sealed: bytes) -> QueuedEdit:
        payload = self._cipher.open(sealed, aad(b"mutation", mid.encode(), type_tag, rid_tag))
        record_type, rid, fields, wall, counter = json.loads(payload)
        return QueuedEdit(mid, record_type, rid, fields, (wall, counter))

    def queued(self, limit: int | None = None) -> list[QueuedEdit]:
        """The edits not answered yet, oldest first."""
        rows = self._db.execute(
            "SELECT mid, type_tag, rid_tag, sealed FROM queue ORDER BY seq LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [self._queued_edit(*row) for row in rows]

    def _queued_for(self, where: str, params: tuple[bytes, ...]) -> list[QueuedEdit]:
        rows = self._db.execute(
            f"SELECT mid, type_tag, rid_tag, sealed FROM queue WHERE {where} ORDER BY seq", params
        )
        return [self._queued_edit(*row) for row in rows]

    def settle(self, edits: Sequence[QueuedEdit], results: Sequence[MutationResult]) -> None:
        """Store the server's answers to ``edits`` and drop them from the queue,
        in one transaction: what the server applied goes into the server copy;
        a ``record`` in a result (a conflict, an ``mdm``/locked refusal)
        replaces the copy's fields with the server's values."""
        by_mid = {result.mid: result for result in results}
        with self._writing():
            for edit in edits:
                result = by_mid.get(edit.mid)
                if result is None:
                    continue  # not answered: stays queued
                self._apply_result(edit, result)
                self._keep_refused(edit, result)
                self._db.execute("DELETE FROM queue WHERE mid = ?", (edit.mid,))

    def _keep_refused(self, edit: QueuedEdit, result: MutationResult) -> None:
        """Keep the refused part of ``edit`` in the "needs attention" list."""
        outcomes = result.fields or {}
        if edit.fields is None:
            if result.status != "rejected":
                return
            refused: dict[str, Any] | None = None
        else:
            refused = {
                name: value
                for name, value in edit.fields.items()
                if outcomes.get(name, result.status) not in _TAKEN
            }
            if not refused:
                return
        item = NeedsAttention(
            edit.mid, edit.type, edit.rid, refused, result.reason, result.message, dict(outcomes)
        )
        type_tag, rid_tag = self._tags(edit.type, edit.rid)
        payload = json.dumps(
            [item.type, item.rid, item.fields, item.reason, item.message, item.outcomes]
        ).encode()
        sealed = self._cipher.seal(payload, aad(b"attention", edit.mid.encode(), type_tag, rid_tag))
        self._db.execute(
            "INSERT OR REPLACE INTO attention VALUES (?, ?, ?, ?)",
            (edit.mid, type_tag, rid_tag, sealed),
        )

    # ------------------------------------------------------------ needs attention

    def needs_attention(self) -> list[NeedsAttention]:
        """The refused edits kept for the user, oldest first: show them, let
        the user fix them, then :meth:`resend` or :meth:`dismiss` each."""
        rows = self._db.execute(
            "SELECT mid, type_tag, rid_tag, sealed FROM attention ORDER BY rowid"
        )
        return [self._opened_attention(*row) for row in rows]

    def _opened_attention(
        self, mid: str, type_tag: bytes, rid_tag: bytes, sealed: bytes
    ) -> NeedsAttention:
        payload = self._cipher.open(sealed, aad(b"attention", mid.encode(), type_tag, rid_tag))
        record_type, rid, fields, reason, message, outcomes = json.loads(payload)
        return NeedsAttention(mid, record_type, rid, fields, reason, message, outcomes)

    def resend(self, mid: str, fields: dict[str, Any] | None) -> QueuedEdit:
        """Queue ``fields`` (the user's fixed values; None: the delete again)
        as a new edit of the refused edit ``mid``'s record, with a new
        ``mid`` and stamp, and drop ``mid`` from the list, in one
        transaction. KeyError if ``mid`` is not in the list."""
        if fields is not None and not fields:
            raise ValueError("an edit needs at least one field (or None to delete)")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            item = self._attention_item(mid)
            edit = QueuedEdit(uuid.uuid4().hex, item.type, item.rid, fields, self._tick())
            self._queue(edit)
            self._db.execute("DELETE FROM attention WHERE mid = ?", (mid,))
        return edit

    def dismiss(self, mid: str) -> None:
        """The user dropped the refused edit ``mid``: forget it (and its values).
        KeyError if ``mid`` is not in the list."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._attention_item(mid)
            self._db.execute("DELETE FROM attention WHERE mid = ?", (mid,))

    def _attention_item(self, mid: str) -> NeedsAttention:
        row = self._db.execute(
            "SELECT mid, type_tag, rid_tag, sealed FROM attention WHERE mid = ?", (mid,)
        ).fetchone()
        if row is None:
            raise KeyError(mid)
        return self._opened_attention(*row)

    def _apply_result(self, edit: QueuedEdit, result: MutationResult) -> None:
        if edit.fields is None:
            if result.status == "applied":
                self._put(edit.type, edit.rid, None)
            return
        tags = self._tags(edit.type, edit.rid)
        copy = self._server_copy(edit.type, edit.rid, tags) or {}
        if result.record is not None:
            copy.update(result.record)
        outcomes = result.fields or {}
        applied = {
            name: value
            for name, value in edit.fields.items()
            if outcomes.get(name, result.status) == "applied"
        }
        if applied and result.record is None:
            copy = _laid_over(copy, applied)
        if copy:
            self._put(edit.type, edit.rid, copy, tags)

    # ------------------------------------------------------------ server copy

    def _opened_record(
        self, record_type: str, type_tag: bytes, rid_tag: bytes, sealed: bytes, rid: str | None
    ) -> tuple[str, dict[str, Any]]:
        """A record's id and fields. The associated data binds the blob to its
        row's tags; the ids inside are compared too (only this key wrote them)."""
        payload = self._cipher.open(sealed, aad(b"record", type_tag, rid_tag))
        stored_type, stored_rid, fields = json.loads(payload)
        if stored_type != record_type or rid not in (None, stored_rid):
            raise StoreIntegrityError("a sealed record names another record than its row")
        return str(stored_rid), dict(fields)

    def _server_copy(
        self, record_type: str, rid: str, tags: tuple[bytes, bytes] | None = None
    ) -> dict[str, Any] | None:
        type_tag, rid_tag = tags or self._tags(record_type, rid)
        row = self._db.execute(
            "SELECT sealed FROM records WHERE type_tag = ? AND rid_tag = ?", (type_tag, rid_tag)
        ).fetchone()
        if row is None:
            return None
        return self._opened_record(record_type, type_tag, rid_tag, row[0], rid)[1]

    def _put(
        self,
        record_type: str,
        rid: str,
        fields: dict[str, Any] | None,
        tags: tuple[bytes, bytes] | None = None,
        old: dict[str, Any] | EllipsisType | None = ...,
    ) -> None:
        """Store (None: drop) the server copy of a record, and its type's
        digest; ``old``: the copy held before, when the caller read it."""
        type_tag, rid_tag = tags or self._tags(record_type, rid)
        if old is ...:
            old = self._server_copy(record_type, rid, (type_tag, rid_tag))
        self._tally.replaced(record_type, rid, old, fields)
        if fields is None:
            self._db.execute(
                "DELETE FROM records WHERE type_tag = ? AND rid_tag = ?", (type_tag, rid_tag)
            )
        else:
            payload = json.dumps([record_type, rid, fields]).encode()
            sealed = self._cipher.seal(payload, aad(b"record", type_tag, rid_tag))
            self._db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (type_tag, rid_tag, sealed)
            )

    def _set_key(
        self, name: str, types: Iterable[str] | None, classes: Iterable[str] | None = None
    ) -> str:
        """The meta key of ``name`` (``cursor``, ``snapshot``) for a type set:
        the bare name for every type (as SDKs before per-set cursors kept it),
        else with a keyed tag of the sorted, distinct names (not in clear).
        A pull of other data classes than the core data (``classes``, e.g.
        ``["batch"]``) has keys of its own, ``<name>:c:<tag>``."""
        chosen = sorted(set(classes)) if classes is not None else [CORE_CLASS]
        if chosen != [CORE_CLASS]:
            names = sorted(set(types)) if types is not None else ["*"]
            return f"{name}:c:{self._cipher.tag('classes', *chosen, '|', *names).hex()}"
        if types is None:
            return name
        return f"{name}:{self._cipher.tag('types', *sorted(set(types))).hex()}"

    def cursor_for(
        self, types: Iterable[str] | None, classes: Iterable[str] | None = None
    ) -> str | None:
        """Where the next pull of exactly these types (and data classes; None:
        the core data) continues (None: all types; the answer None: a full
        download of them). Each selection has its own cursor: the server
        refuses one selection's cursor for another."""
        return self._meta(self._set_key("cursor", types, classes))

    def apply_changes(
        self,
        changes: Changes,
        pulled_types: Iterable[str] | None = None,
        classes: Iterable[str] | None = None,
    ) -> None:
        """Store one ``changes`` page of a pull of ``pulled_types`` (None: all)
        and ``classes`` (None: the core data), and that selection's cursor.
        The first page of a full download of the core data (``snapshot``)
        first forgets the records of the pulled types, and with them their
        batch data: every pull of other classes starts a full download again.
        A full download of other classes forgets nothing (its fields are laid
        over the records held)."""
        types = None if pulled_types is None else list(pulled_types)
        core = classes is None or set(classes) == {CORE_CLASS}
        snapshot_key = self._set_key("snapshot", types, classes)
        with self._writing():
            if changes.snapshot and self._meta(snapshot_key) is None:
                if core and types is None:
                    self._db.execute("DELETE FROM records")
                    self._tally.forget(None)
                for record_type in (types or ()) if core else ():
                    self._db.execute(
                        "DELETE FROM records WHERE type_tag = ?", (self._type_tag(record_type),)
                    )
                    self._tally.forget(record_type)
                if core:
                    self._db.execute(
                        "DELETE FROM meta WHERE key LIKE 'cursor:c:%' OR key LIKE 'snapshot:c:%'"
                    )
                self._set_meta(snapshot_key, "1")
            if not changes.snapshot:
                self._set_meta(snapshot_key, None)
            if not core:
                learned: dict[str, set[str]] = {}
                for change in changes.changes:
                    learned.setdefault(change.type, set()).update(change.fields)
                self._tally.learn_batch(learned)
            for change in changes.changes:
                self._store_change(change, whole=False)
            self._set_meta(self._set_key("cursor", types, classes), changes.cursor)
            if not changes.more:
                self._set_meta(snapshot_key, None)

    def digest(self, types: Iterable[str] | None = None) -> dict[str, Digest]:
        """What the store holds of ``types`` (None: every type it holds), per
        type: the digest a pull sends (docs/protocol.md 3.8). The digests are
        kept as records are stored; the first call of a store built them from
        the records (a scan of the file, once per opening)."""
        if not self._digests_built:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._tally.rebuild()
            self._digests_built = True
        names = self._held_types() if types is None else set(types)
        held = {name: self._tally.of(name) for name in sorted(names)}
        return {name: digest for name, digest in held.items() if digest.count}

    def holdings(self, record_type: str) -> dict[str, int]:
        """Every record held of a type, with its hash (a scan of that type)."""
        type_tag = self._type_tag(record_type)
        rows = self._db.execute(
            "SELECT rid_tag, sealed FROM records WHERE type_tag = ?", (type_tag,)
        )
        return {
            rid: self._tally.hash_of(record_type, rid, fields)
            for rid, fields in (
                self._opened_record(record_type, type_tag, rid_tag, sealed, None)
                for rid_tag, sealed in rows
            )
        }

    def apply_repair(self, changes: Changes, pulled_types: Iterable[str] | None = None) -> None:
        """Store the answer to a ``repair`` (``changes.repair``): each record
        it holds replaces the held copy's core fields whole (the fields
        learned as batch data are kept), each ``removed`` one is dropped; and
        the cursor of ``pulled_types``."""
        types = None if pulled_types is None else list(pulled_types)
        with self._writing():
            for change in changes.changes:
                self._store_change(change, whole=True)
            self._set_meta(self._set_key("cursor", types), changes.cursor)

    def _store_change(self, change: Change, *, whole: bool) -> None:
        """Store one pulled change: a ``removed`` record is dropped; otherwise
        its fields are laid over the held server copy, or (``whole``: a
        repair) replace its core fields, the fields learned as batch data kept."""
        if change.removed:
            self._put(change.type, change.rid, None)
            return
        tags = self._tags(change.type, change.rid)
        held = self._server_copy(change.type, change.rid, tags)
        kept = held or {}
        if whole:
            batch = self._tally.batch_fields(change.type)
            kept = {name: value for name, value in kept.items() if name in batch}
        self._put(change.type, change.rid, {**kept, **change.fields}, tags, held)

    def _held_types(self) -> set[str]:
        """The names of the types held (one opened record per type)."""
        names: set[str] = set()
        for (type_tag,) in self._db.execute("SELECT DISTINCT type_tag FROM records").fetchall():
            rid_tag, sealed = self._db.execute(
                "SELECT rid_tag, sealed FROM records WHERE type_tag = ? LIMIT 1", (type_tag,)
            ).fetchone()
            names.add(self._opened_record_type(type_tag, rid_tag, sealed))
        return names

    def _opened_record_type(self, type_tag: bytes, rid_tag: bytes, sealed: bytes) -> str:
        payload = self._cipher.open(sealed, aad(b"record", type_tag, rid_tag))
        return str(json.loads(payload)[0])

    def _all_records(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every record held: ``(type, rid, fields)``."""
        for type_tag, rid_tag, sealed in self._db.execute(
            "SELECT type_tag, rid_tag, sealed FROM records"
        ).fetchall():
            payload = self._cipher.open(sealed, aad(b"record", type_tag, rid_tag))
            record_type, rid, fields = json.loads(payload)
            yield str(record_type), str(rid), dict(fields)

    def restart_download(
        self, types: Iterable[str] | None = None, classes: Iterable[str] | None = None
    ) -> None:
        """Forget the cursor of ``types`` (None: all types) and ``classes``
        (None: the core data): the next pull of them is a full download."""
        types = None if types is None else list(types)
        with self._db:
            self._set_meta(self._set_key("cursor", types, classes), None)
            self._set_meta(self._set_key("snapshot", types, classes), None)

    def record(self, record_type: str, rid: str) -> dict[str, Any] | None:
        """The record as the app should show it: the server copy with the
        queued edits over it (None: unknown, or deleted by a queued edit)."""
        view = self._server_copy(record_type, rid)
        for edit in self._queued_for("type_tag = ? AND rid_tag = ?", self._tags(record_type, rid)):
            view = None if edit.fields is None else _laid_over(view, edit.fields)
        return view

    def records(self, record_type: str) -> dict[str, dict[str, Any]]:
        """Every record of a type, as :meth:`record` shows them."""
        type_tag = self._type_tag(record_type)
        rows = self._db.execute(
            "SELECT rid_tag, sealed FROM records WHERE type_tag = ?", (type_tag,)
        )
        view: dict[str, dict[str, Any] | None] = dict(
            self._opened_record(record_type, type_tag, rid_tag, sealed, None)
            for rid_tag, sealed in rows
        )
        for edit in self._queued_for("type_tag = ?", (type_tag,)):
            view[edit.rid] = (
                None if edit.fields is None else _laid_over(view.get(edit.rid), edit.fields)
            )
        return {rid: fields for rid, fields in view.items() if fields is not None}


def _laid_over(view: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """``view`` with an edit's ``fields`` over it. A log edit (the value of an
    ``append`` field, ``{"add": [...], "remove": [...]}``, docs/sync.md) is
    applied to the list in ``view``: removed items go, added ones missing are
    appended; the server's merged order arrives with the next pull."""
    out = dict(view or {})
    for name, value in fields.items():
        out[name] = value
        if isinstance(value, dict) and value and value.keys() <= {"add", "remove"}:
            old, gone = view and view.get(name), value.get("remove") or []
            log = [item for item in (old if isinstance(old, list) else []) if item not in gone]
            out[name] = log + [item for item in value.get("add") or [] if item not in log]
    return out


def _batches(edits: list[QueuedEdit], size: int) -> Iterable[list[QueuedEdit]]:
    batch: list[QueuedEdit] = []
    weight = 0
    for edit in edits:
        cost = len(json.dumps(edit.to_wire())) + 2
        if batch and (len(batch) >= size or weight + cost > MAX_BATCH_BYTES):
            yield batch
            batch, weight = [], 0
        batch.append(edit)
        weight += cost
    if batch:
        yield batch


class SyncClient:
    """Flushes a :class:`SyncStore`'s queue and pulls changes over a
    :class:`~fieldpush_client.client.PushClient` (see the module docstring).

    ``on_result`` is called with each edit and the server's answer (applied,
    conflict with the winning values in ``record``, rejected with a reason;
    a refused edit's fields are kept in :meth:`SyncStore.needs_attention`).

    With ``auto`` (the default), :meth:`start` keeps the queue flowing: it
    flushes whenever the server is reached (every ``welcome``, every long
    poll answered on the fallback) and after every :meth:`edit`, over the
    socket when it is up and over ``POST /v1/sync/push`` when it is not; a
    flush that fails for a reason a later attempt can fix
    (:func:`~fieldpush_client.upload.worth_retrying`: ``unavailable``,
    ``rate_limited``, a transport error, a garbled answer) is tried again
    after a jittered backoff (``retry_base_s`` doubling up to
    ``retry_cap_s``; a contact tries at once) until the queue is empty: a
    phone that cannot reach the server at all makes one connection attempt
    per backoff step while it has edits queued, none when the queue is
    empty. It pulls after every ``welcome``.
    """

    def __init__(
        self,
        client: PushClient,
        store: SyncStore,
        *,
        types: Sequence[str] | None = None,
        batch_size: int = 100,
        page_size: int = 500,
        on_result: Callable[[QueuedEdit, MutationResult], None] | None = None,
        auto: bool = True,
        retry_base_s: float = 0.25,
        retry_cap_s: float = 5.0,
        drift: bool = True,
    ) -> None:
        self.client = client
        #: Send the store's digest with pulls and repair what differs
        #: (docs/sdk.md, "Drift"); off after a server refused a digest.
        self.drift = drift
        self.store = store
        self.types = list(types) if types is not None else None
        self.batch_size = batch_size
        self.page_size = page_size
        self.on_result = on_result
        self._auto = auto
        self._retry = partial(backoff_delays, base_s=retry_base_s, cap_s=retry_cap_s)
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when there may be something to flush (an edit, a contact).
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """With ``auto``: keep flushing, and pull after every ``welcome``, in the background."""
        if self._auto and not self._tasks:
            loop = asyncio.get_running_loop()
            self._wake.set()  # whatever an earlier run left queued
            self._tasks = [
                loop.create_task(self._keep_flushing()),
                loop.create_task(self._after_contacts()),
            ]

    async def close(self) -> None:
        """Stop syncing in the background (queued edits stay queued)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def __aenter__(self) -> SyncClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _after_contacts(self) -> None:
        """Wake the flusher at every contact; pull after every ``welcome``."""
        seen = 0
        session = None
        while True:
            seen = await self.client.contact_after(seen)
            self._wake.set()
            if self.client.connected and self.client.session is not session:
                session = self.client.session
                try:
                    await self.pull()
                except Exception as exc:  # retried at the next welcome
                    log.info("fieldpush pull after connecting failed: %s", exc)

    async def _keep_flushing(self) -> None:
        """Flush when woken; retry what is worth it with backoff (see the class)."""
        delays: Iterator[float] | None = None
        while True:
            if delays is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), next(delays))
            self._wake.clear()
            if not self.store.queued(limit=1):
                delays = None
                continue
            try:
                await self.flush()
            except Exception as exc:
                if not worth_retrying(exc):
                    log.warning("fieldpush flush refused (the edits stay queued): %s", exc)
                    delays = None
                    continue
                log.info("fieldpush flush failed, trying again (the edits stay queued): %s", exc)
                delays = delays or self._retry()
            else:
                delays = None

    async def sync(self) -> None:
        """Flush the queue, then pull."""
        await self.flush()
        await self.pull()

    def edit(self, record_type: str, rid: str, fields: dict[str, Any] | None) -> QueuedEdit:
        """Queue an edit; with ``auto``, flushed as soon as a transport works."""
        edit = self.store.edit(record_type, rid, fields)
        self._wake.set()
        return edit

    def resend(self, mid: str, fields: dict[str, Any] | None) -> QueuedEdit:
        """:meth:`SyncStore.resend` a refused edit, fixed; flushed as :meth:`edit` is."""
        edit = self.store.resend(mid, fields)
        self._wake.set()
        return edit

    async def flush(self) -> list[tuple[QueuedEdit, MutationResult]]:
        """Send every queued edit, in order, over the socket when it is up and
        over ``POST /v1/sync/push`` otherwise; the answers, in order. An answer
        that does not answer the batch sent is a ProtocolError and settles
        nothing. Raises (NotConnected, RequestTimeout, RequestError,
        PublishError, ProtocolError, ``httpx.HTTPError``) with the unanswered
        edits still queued."""
        answered: list[tuple[QueuedEdit, MutationResult]] = []
        async with self._lock:
            for batch in _batches(self.store.queued(), self.batch_size):
                reply = check_answer(batch, await self._send_batch(batch))
                self.store.settle(batch, reply.results)
                by_mid = {result.mid: result for result in reply.results}
                for edit in batch:
                    result = by_mid[edit.mid]
                    answered.append((edit, result))
                    if self.on_result is not None:
                        self.on_result(edit, result)
        return answered

    async def _send_batch(self, batch: list[QueuedEdit]) -> Mutated:
        """One ``mutate`` (or HTTP push); when the server says ``rate_limited``,
        wait and send it again."""
        mutations = tuple(batch)
        delay = RATE_LIMIT_WAIT_S
        while True:
            try:
                if not self.client.connected:
                    return await self.client.push_by_http(mutations)
                return await self.client.call(partial(Mutate, mutations=mutations), Mutated)
            except (RequestError, PublishError) as exc:
                if exc.code != ErrorCode.RATE_LIMITED:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def pull(self) -> int:
        """Pull the client's ``types`` (None: every type the user may read)
        until nothing more is new, with that type set's own cursor
        (:meth:`SyncStore.cursor_for`): SyncClients of other type sets on the
        same store skip none of each other's changes. How many changes were
        stored. A ``resync`` answer starts a full download of the set.

        With ``drift``, every pull from a cursor carries the store's digest
        (:meth:`SyncStore.digest`); once caught up the server compares it
        (one more, usually empty, pull when the last page had changes), and
        the buckets it reports differing are repaired at once
        (:meth:`_repair`): a store that lost or changed records converges in
        this one call."""
        count = 0
        async with self._lock:
            types = tuple(self.types) if self.types is not None else None
            checked = False
            while True:
                cursor = self.store.cursor_for(types)
                digest = self.store.digest(types) if self.drift and cursor is not None else None
                pull = partial(
                    Pull, cursor=cursor, types=types, limit=self.page_size, digest=digest
                )
                try:
                    page = await self.client.call(pull, Changes)
                except RequestError as exc:
                    if exc.code == ErrorCode.BAD_REQUEST and "'digest'" in str(exc):
                        log.info("fieldpush pull: the server takes no digest (%s)", exc)
                        self.drift = False
                        continue
                    if exc.code != ErrorCode.RESYNC:
                        raise
                    log.info("fieldpush pull: %s; downloading everything again", exc)
                    self.store.restart_download(types)
                    continue
                self.store.apply_changes(page, types)
                count += len(page.changes)
                if page.drift is not None and page.drift.differs:
                    count += await self._repair(types, page.drift)
                if page.more:
                    continue
                if not self.drift or page.drift is not None or checked or not page.changes:
                    return count
                checked = True  # caught up now: one more pull compares the digest

    async def _repair(self, types: tuple[str, ...] | None, report: DriftReport) -> int:
        """Re-download the differing buckets of each type the server reported
        (``pull`` with ``repair``); how many records were replaced or dropped.
        A bucket too large for one request downloads the type set again; an
        answer that is not a repair (changes arrived meanwhile) is stored as
        a page and ends the repair: the next sync compares again."""
        repaired = 0
        for name, theirs in report.differs.items():
            try:
                for asked in plan_repairs(self.store.holdings(name), theirs):
                    cursor = self.store.cursor_for(types)
                    pull = partial(Pull, cursor=cursor, types=types, repair={name: asked})
                    page = await self.client.call(pull, Changes)
                    if not page.repair:
                        self.store.apply_changes(page, types)
                        return repaired + len(page.changes)
                    self.store.apply_repair(page, types)
                    repaired += len(page.changes)
            except BucketTooLarge as exc:
                log.warning("fieldpush drift in %s: %s; downloading it again", name, exc)
                self.store.restart_download(types)
                return repaired
        if repaired:
            log.info("fieldpush drift: %d record(s) repaired", repaired)
        return repaired
