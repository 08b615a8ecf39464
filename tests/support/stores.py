"""The store key of the SDK tests and a look at what a store's files hold on disk."""

from __future__ import annotations

from pathlib import Path

#: The key every test store is created with (the tests of the key itself use others).
STORE_KEY = bytes(range(32))


def store_files(db: Path) -> list[Path]:
    """The database and the files SQLite keeps beside it (``-wal``, ``-shm``, ``-journal``)."""
    return [db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]


def raw_bytes(db: Path) -> dict[str, bytes]:
    """The raw bytes of the database and of each of its side files that exists."""
    return {path.name: path.read_bytes() for path in store_files(db) if path.exists()}
