"""The SDK's encrypted local store (fieldpush_client.sync.SyncStore, fieldpush_client.vault).

What the file on the phone holds: every record value and queued edit sealed with
AES-256-GCM under the application's key, record ids and types as keyed tags; a
wrong key, a changed byte or a blob moved to another row is an error, never data.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fieldpush_client import StoreError, StoreIntegrityError, StoreKeyError, SyncStore
from fieldpush_client.protocol import Change, Changes, MutationResult
from fieldpush_client.vault import RecordCipher, aad, generate_key
from tests.support.stores import STORE_KEY, raw_bytes

OTHER_KEY = bytes(range(1, 33))
#: What a user typed: ASCII, so that JSON would keep it byte for byte if it were in clear.
TYPED = "Quarry-Budget-8812-Zebra"
PULLED = "Drawing-7731-Heron-Contract"
TYPED_RID = "wo-Kestrel-4410"
PULLED_RID = "cust-Osprey-9902"
SENT = "Sent-Long-Ago-Walrus-3301"


def page(*changes: Change, cursor: str = "cur-1", snapshot: bool = False) -> Changes:
    return Changes(id=1, changes=list(changes), cursor=cursor, more=False, snapshot=snapshot)


def fill(store: SyncStore) -> None:
    """Data a user typed (edits) and data the server sent (a pull), in one store."""
    store.apply_changes(
        page(
            Change("customer", PULLED_RID, {"name": PULLED, "budget": 100}),
            Change("customer", "c2", {"name": "ACME"}),
            cursor="cursor-Plain-5150",
        )
    )
    store.edit("work_order", TYPED_RID, {"note": TYPED, "hours": 3})
    store.edit("customer", PULLED_RID, {"stage": TYPED})


def assert_absent(db: Path, *secrets: str) -> None:
    files = raw_bytes(db)
    assert files, "no file to scan"
    for name, data in files.items():
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} is readable in {name}"


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def execute(db: Path, statement: str, *params: Any) -> None:
    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute(statement, params)
    finally:
        connection.close()


# ------------------------------------------------------------------ round trip


def test_records_and_queued_edits_come_back_after_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY, wall_ms=lambda: 1_000)
    fill(store)
    edits = store.queued()
    store.settle(edits[:1], [MutationResult(mid=edits[0].mid, status="applied")])
    store.close()

    store = SyncStore(db, key=STORE_KEY)
    assert store.cursor == "cursor-Plain-5150"
    assert store.queued() == edits[1:]
    assert store.queued()[0].hlc == (1_000, 1)
    assert store.record("work_order", TYPED_RID) == {"note": TYPED, "hours": 3}  # settled
    assert store.record("customer", PULLED_RID) == {"name": PULLED, "budget": 100, "stage": TYPED}
    assert store.records("customer") == {
        PULLED_RID: {"name": PULLED, "budget": 100, "stage": TYPED},
        "c2": {"name": "ACME"},
    }
    assert store.records("work_order") == {TYPED_RID: {"note": TYPED, "hours": 3}}
    assert store.records("visit_plan") == {}
    store.apply_changes(page(Change("customer", "c2", {}, removed=True), cursor="cur-2"))
    assert set(store.records("customer")) == {PULLED_RID}
    store.close()


def test_a_full_download_forgets_only_the_pulled_types(tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    store.apply_changes(page(Change("customer", "c1", {"a": 1}), Change("visit_plan", "v1", {})))
    store.apply_changes(page(Change("customer", "c9", {"a": 9}), snapshot=True), ["customer"])
    assert store.records("customer") == {"c9": {"a": 9}}
    assert store.records("visit_plan") == {"v1": {}}
    store.close()


# ------------------------------------------------------------------ nothing in clear


def test_nothing_typed_or_pulled_is_readable_in_the_files(tmp_path: Path) -> None:
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY)
    fill(store)
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the pages are in the WAL now
    # The scan reads what the store wrote: the cursor (not user data) is in clear.
    assert any(b"cursor-Plain-5150" in data for data in raw_bytes(db).values())
    assert_absent(db, TYPED, PULLED, TYPED_RID, PULLED_RID)
    edits = store.queued()
    store.settle(edits, [MutationResult(mid=edit.mid, status="applied") for edit in edits])
    assert_absent(db, TYPED, PULLED, TYPED_RID, PULLED_RID)
    store.close()  # checkpoints the WAL into the database file
    assert b"cursor-Plain-5150" in db.read_bytes()
    assert_absent(db, TYPED, PULLED, TYPED_RID, PULLED_RID)


def test_a_deleted_record_leaves_no_old_blob_in_the_free_pages(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    store.apply_changes(page(*(Change("customer", f"c{i}", {"n": "x" * 500}) for i in range(40))))
    store.close()
    old = [sealed for (sealed,) in rows(db, "SELECT sealed FROM records")]
    store = SyncStore(db, key=STORE_KEY)
    removed = [Change("customer", f"c{i}", {}, removed=True) for i in range(40)]
    store.apply_changes(page(*removed, cursor="cur-2"))
    store.close()
    data = db.read_bytes()
    assert len(old) == 40 and not any(blob in data for blob in old)  # secure_delete


def test_the_tables_hold_tags_and_sealed_blobs_only(tmp_path: Path) -> None:
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY)
    fill(store)
    store.close()
    for type_tag, rid_tag, sealed in rows(db, "SELECT * FROM records"):
        assert len(type_tag) == len(rid_tag) == 16 and sealed[0] == 1
    queue = rows(db, "SELECT mid, type_tag, rid_tag, sealed FROM queue")
    assert len(queue) == 2
    assert all(len(mid) == 32 and sealed[0] == 1 for mid, _, _, sealed in queue)
    # The same record's edit and copy share their tags (lookups need them), nothing else.
    assert {(t, r) for t, r, _ in rows(db, "SELECT * FROM records")} >= {
        (t, r) for _, t, r, _ in queue[1:]
    }


def test_two_writes_of_one_value_are_sealed_under_two_nonces(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    store.edit("customer", "c1", {"stage": "lost"})
    store.edit("customer", "c1", {"stage": "lost"})
    store.apply_changes(page(Change("customer", "c1", {"stage": "lost"})))
    (first,) = rows(db, "SELECT sealed FROM records")
    store.apply_changes(page(Change("customer", "c1", {"stage": "lost"})))
    (second,) = rows(db, "SELECT sealed FROM records")
    store.close()
    assert first[0] != second[0] and first[0][1:13] != second[0][1:13]
    edits = [sealed for (sealed,) in rows(db, "SELECT sealed FROM queue")]
    assert len(edits) == 2 and edits[0][1:13] != edits[1][1:13]
    cipher = RecordCipher(STORE_KEY)
    nonces = {cipher.seal(b"same", b"row")[1:13] for _ in range(1000)}
    assert len(nonces) == 1000


# ------------------------------------------------------------------ keys


def test_a_wrong_key_fails_before_anything_is_read_and_leaves_the_store_intact(
    tmp_path: Path,
) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    fill(store)
    store.close()
    with pytest.raises(StoreKeyError, match="created with another key") as caught:
        SyncStore(db, key=OTHER_KEY)
    assert caught.value.reason == "wrong_key"
    assert isinstance(caught.value, StoreError)
    store = SyncStore(db, key=STORE_KEY)
    assert store.record("work_order", TYPED_RID) == {"note": TYPED, "hours": 3}
    store.close()


def test_a_key_provider_is_called_once_at_open(tmp_path: Path) -> None:
    calls: list[int] = []
    key = generate_key()

    def keystore() -> bytes:
        calls.append(1)
        return key

    store = SyncStore(tmp_path / "p.db", key=keystore)
    fill(store)
    store.records("customer")
    store.close()
    assert calls == [1]
    store = SyncStore(tmp_path / "p.db", key=bytearray(key))  # bytes-like is fine too
    assert store.record("work_order", TYPED_RID) == {"note": TYPED, "hours": 3}
    store.close()


def _raises() -> bytes:
    raise OSError("keystore locked")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (bytes(31), "31 bytes; AES-256 needs exactly 32"),
        (bytes(33), "33 bytes; AES-256 needs exactly 32"),
        (b"", "is 0 bytes;"),
        ("k" * 32, "a str, not 32 bytes"),
        (None, "a NoneType, not 32 bytes"),
        (12345, "an? int, not 32 bytes"),
        (lambda: "k" * 32, "the key provider returned a str"),
        (lambda: bytes(16), "the key provider returned 16 bytes;"),
        (lambda: None, "the key provider returned a NoneType"),
    ],
    ids=["31", "33", "empty", "str", "none", "int", "provider-str", "provider-16", "provider-none"],
)
def test_a_malformed_key_is_refused_with_the_reason(tmp_path: Path, key: Any, message: str) -> None:
    with pytest.raises(StoreKeyError, match=message) as caught:
        SyncStore(tmp_path / "p.db", key=key)
    assert caught.value.reason == "malformed"
    assert not (tmp_path / "p.db").exists()  # refused before the file was created


def test_a_key_provider_that_raises_is_a_store_key_error_caused_by_it(tmp_path: Path) -> None:
    with pytest.raises(
        StoreKeyError, match="the key provider raised OSError: keystore locked"
    ) as e:
        SyncStore(tmp_path / "p.db", key=_raises)
    assert e.value.reason == "provider_failed"
    assert isinstance(e.value.__cause__, OSError)


def test_an_async_key_provider_is_refused_without_a_never_awaited_warning(
    tmp_path: Path,
) -> None:
    async def keystore() -> bytes:
        await asyncio.sleep(0)
        return STORE_KEY

    provider: Callable[[], Any] = keystore
    with pytest.raises(StoreKeyError, match="returned a coroutine"):
        SyncStore(tmp_path / "p.db", key=provider)


# ------------------------------------------------------------------ tampering


def test_a_record_blob_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    store.apply_changes(page(Change("customer", "c1", {"budget": 1}), Change("customer", "c2", {})))
    store.close()
    (c1_tags,) = rows(db, "SELECT type_tag, rid_tag FROM records WHERE length(sealed) > 60")
    execute(
        db,
        "UPDATE records SET sealed = (SELECT sealed FROM records WHERE rid_tag = ?)"
        " WHERE rid_tag != ?",
        c1_tags[1],
        c1_tags[1],
    )
    store = SyncStore(db, key=STORE_KEY)
    assert store.record("customer", "c1") == {"budget": 1}
    with pytest.raises(StoreIntegrityError, match="does not authenticate"):
        store.record("customer", "c2")
    with pytest.raises(StoreIntegrityError):
        store.records("customer")
    store.close()


def test_a_queued_edit_moved_to_another_row_does_not_open(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    store.edit("customer", "c1", {"budget": 1})
    store.edit("customer", "c1", {"budget": 2})
    store.close()
    (first,), (second,) = rows(db, "SELECT sealed FROM queue ORDER BY seq")
    execute(db, "UPDATE queue SET sealed = ? WHERE seq = 1", second)  # an older edit replayed
    store = SyncStore(db, key=STORE_KEY)
    with pytest.raises(StoreIntegrityError):
        store.queued()
    with pytest.raises(StoreIntegrityError):
        store.record("customer", "c1")
    store.close()
    execute(db, "UPDATE queue SET sealed = ? WHERE seq = 1", first)
    # Also the record a queued edit belongs to is bound: its tags moved to another record.
    execute(db, "UPDATE queue SET rid_tag = zeroblob(16) WHERE seq = 2")
    store = SyncStore(db, key=STORE_KEY)
    with pytest.raises(StoreIntegrityError):
        store.queued()
    store.close()


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("a byte of the ciphertext", lambda blob: blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]),
        ("the last byte of the tag", lambda blob: blob[:-1] + bytes([blob[-1] ^ 0x80])),
        ("a byte of the nonce", lambda blob: blob[:1] + bytes([blob[1] ^ 1]) + blob[2:]),
        ("cut short", lambda blob: blob[:-1]),
        ("cut to nothing", lambda blob: b""),
    ],
)
def test_a_changed_byte_is_an_integrity_error_never_data(
    tmp_path: Path, where: str, change: Callable[[bytes], bytes]
) -> None:
    db = tmp_path / "p.db"
    store = SyncStore(db, key=STORE_KEY)
    store.apply_changes(page(Change("customer", "c1", {"note": TYPED})))
    store.close()
    ((blob,),) = rows(db, "SELECT sealed FROM records")
    execute(db, "UPDATE records SET sealed = ?", change(blob))
    store = SyncStore(db, key=STORE_KEY)
    with pytest.raises(StoreIntegrityError):
        store.record("customer", "c1")
    store.close()


def test_an_unknown_format_version_byte_is_named(tmp_path: Path) -> None:
    cipher = RecordCipher(STORE_KEY)
    blob = cipher.seal(b"x", aad(b"a"))
    assert cipher.open(blob, aad(b"a")) == b"x"
    with pytest.raises(StoreIntegrityError, match="unknown format version 2"):
        cipher.open(b"\x02" + blob[1:], aad(b"a"))
    with pytest.raises(StoreIntegrityError):
        cipher.open(blob, aad(b"b"))
    assert aad(b"ab", b"c") != aad(b"a", b"bc")


def test_a_changed_key_check_reads_as_a_wrong_key(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    SyncStore(db, key=STORE_KEY).close()
    execute(db, "UPDATE meta SET value = zeroblob(45) WHERE key = 'key_check'")
    with pytest.raises(StoreKeyError, match="another key"):
        SyncStore(db, key=STORE_KEY)
    execute(db, "DELETE FROM meta WHERE key = 'key_check'")
    with pytest.raises(StoreIntegrityError, match="key check is missing"):
        SyncStore(db, key=STORE_KEY)


# ------------------------------------------------------------------ other files

#: The schema of the SDK before encryption (0.1.0), for the migration test.
PLAINTEXT_SCHEMA = """
CREATE TABLE records (
    type TEXT NOT NULL, rid TEXT NOT NULL, fields TEXT NOT NULL, PRIMARY KEY (type, rid)
);
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mid TEXT NOT NULL UNIQUE, type TEXT NOT NULL, rid TEXT NOT NULL,
    fields TEXT, wall_ms INTEGER NOT NULL, counter INTEGER NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def plaintext_store(db: Path) -> None:
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("PRAGMA secure_delete=OFF")  # SQLite's default (this build's is ON)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(PLAINTEXT_SCHEMA)
    connection.execute(
        "INSERT INTO records VALUES ('customer', ?, ?)", (PULLED_RID, f'{{"name": "{PULLED}"}}')
    )
    connection.executemany(
        "INSERT INTO queue (mid, type, rid, fields, wall_ms, counter) VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("m1", "work_order", TYPED_RID, f'{{"note": "{TYPED}"}}', 10, 0),
            ("m2", "customer", PULLED_RID, None, 10, 1),
        ],
    )
    connection.execute("INSERT INTO meta VALUES ('cursor', 'cur-7'), ('hlc', '[10, 1]')")
    # Edits the old SDK sent and dropped: their plaintext stays in the file's free pages.
    connection.executemany(
        "INSERT INTO queue (mid, type, rid, fields, wall_ms, counter) VALUES (?, ?, ?, ?, 1, 0)",
        [(f"old{i}", "customer", "c1", f'{{"note": "{SENT} {i}"}}') for i in range(300)],
    )
    connection.execute("DELETE FROM queue WHERE mid LIKE 'old%'")
    connection.close()


def test_a_plaintext_store_of_the_previous_sdk_is_encrypted_in_place_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "old.db"
    plaintext_store(db)
    old = db.read_bytes()
    assert TYPED.encode() in old and SENT.encode() in old  # the scan sees plaintext
    with caplog.at_level(logging.WARNING, logger="fieldpush.sdk.sync"):
        store = SyncStore(db, key=STORE_KEY, wall_ms=lambda: 5)
    assert "was not encrypted: sealed 1 records and 2 queued edits" in caplog.text
    assert [(e.mid, e.type, e.rid, e.fields, e.hlc) for e in store.queued()] == [
        ("m1", "work_order", TYPED_RID, {"note": TYPED}, (10, 0)),
        ("m2", "customer", PULLED_RID, None, (10, 1)),
    ]
    assert store.cursor == "cur-7"
    assert store.record("customer", PULLED_RID) is None  # deleted by the queued edit
    assert store.edit("customer", "c3", {"a": 1}).hlc == (10, 2)  # the clock went on
    assert_absent(db, TYPED, PULLED, TYPED_RID, PULLED_RID, SENT)
    store.close()
    assert_absent(db, TYPED, PULLED, TYPED_RID, PULLED_RID, SENT)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fieldpush.sdk.sync"):
        store = SyncStore(db, key=STORE_KEY)  # once: now it is an encrypted store
    assert caplog.text == ""
    assert len(store.queued()) == 3
    store.close()
    with pytest.raises(StoreKeyError, match="another key"):
        SyncStore(db, key=OTHER_KEY)


def test_a_migration_that_fails_leaves_the_plaintext_store_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    plaintext_store(db)
    execute(db, "INSERT INTO records VALUES ('customer', 'broken', 'not json')")
    with pytest.raises(ValueError):
        SyncStore(db, key=STORE_KEY)
    assert rows(db, "SELECT mid FROM queue ORDER BY seq") == [("m1",), ("m2",)]
    assert rows(db, "SELECT count(*) FROM records") == [(2,)]
    assert rows(db, "PRAGMA user_version") == [(0,)]
    execute(db, "DELETE FROM records WHERE rid = 'broken'")
    store = SyncStore(db, key=STORE_KEY)  # the next open encrypts it
    assert [edit.mid for edit in store.queued()] == ["m1", "m2"]
    store.close()


def test_a_store_of_an_unknown_format_or_another_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    SyncStore(newer, key=STORE_KEY).close()
    execute(newer, "PRAGMA user_version = 9")
    with pytest.raises(StoreError, match="store format 9 is not one this SDK knows"):
        SyncStore(newer, key=STORE_KEY)
    other = tmp_path / "other.db"
    execute(other, "CREATE TABLE notes (body TEXT)")
    with pytest.raises(StoreError, match="not a fieldpush store"):
        SyncStore(other, key=STORE_KEY)
    assert rows(other, "SELECT name FROM sqlite_master") == [("notes",)]  # left alone
