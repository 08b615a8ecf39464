"""The upload queue and the download cache, sealed in the
:class:`~fieldpush_client.sync.SyncStore`'s file (docs/sdk.md, "Attachments").

Three tables next to the records, every value an AES-256-GCM blob bound to
its row (:mod:`fieldpush_client.vault`):

- ``file_jobs``: one row per attachment: where its reference goes, its
  name, type, size and sha256, the tus upload id and the bytes the server
  holds, its state and error (all sealed; in clear: a random job id and the
  order of the jobs);
- ``file_chunks``: the bytes of each job, copied in at :meth:`FileStore.add`
  and sealed chunk by chunk (one row per ``chunk_size`` bytes, so a 100 MiB
  file is never held in memory whole and a resumed upload reads only the
  chunk it sends); deleted once the upload is complete;
- ``file_parts``: a download under way, found by the same tag: the pieces
  that arrived, sealed as they come (their lengths in clear), so a transfer
  cut by a dropped signal or a killed app resumes from the bytes kept;
- ``file_cache``: downloaded files, found by a keyed tag of their sha256,
  sealed chunk by chunk; a download's pieces move there, in one transaction,
  only once all of them matched its size and sha256, so a half or a wrong
  download is never read as a file.

A remote wipe (:meth:`SyncStore.erase`) deletes the file, and with it the
queue and the cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any, Final

from fieldpush_client.errors import StoreIntegrityError
from fieldpush_client.sync import SyncStore
from fieldpush_client.vault import RecordCipher, aad

__all__ = ["FileStore", "Job", "JobState"]

_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS file_jobs ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL UNIQUE, sealed BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS file_chunks ("
    " job TEXT NOT NULL, idx INTEGER NOT NULL, sealed BLOB NOT NULL,"
    " PRIMARY KEY (job, idx)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS file_cache ("
    " tag BLOB NOT NULL, idx INTEGER NOT NULL, sealed BLOB NOT NULL,"
    " PRIMARY KEY (tag, idx)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS file_parts ("
    " tag BLOB NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL, sealed BLOB NOT NULL,"
    " PRIMARY KEY (tag, idx)) WITHOUT ROWID",
)


class JobState:
    """The states of an attachment (plain strings, as stored)."""

    #: Its bytes are in the store; not all of them are on the server yet.
    QUEUED: Final = "queued"
    #: On the server, and its reference queued as an edit (``Job.mid``).
    DONE: Final = "done"
    #: Given up: ``Job.error`` says why (the bytes stay until dismissed).
    FAILED: Final = "failed"


@dataclass(slots=True)
class Job:
    """One attachment, as the queue keeps it."""

    job: str
    type: str
    rid: str
    field: str
    single: bool
    name: str
    content_type: str
    size: int
    sha256: str
    chunk_size: int
    upload_id: str | None = None
    #: The bytes the server holds (as last learnt).
    sent: int = 0
    state: str = JobState.QUEUED
    error: str | None = None
    error_reason: str | None = None
    #: The edit that wrote the reference.
    mid: str | None = None
    #: Uploads started again from byte 0 after the server lost one (404/410).
    restarts: int = 0

    def value(self) -> dict[str, Any]:
        """The field value that references the file (once ``upload_id`` is known)."""
        return {
            "id": self.upload_id,
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
            "name": self.name,
        }


class FileStore:
    """See the module docstring. Every call is synchronous (a local SQLite
    transaction); :meth:`add` copies the whole file in."""

    def __init__(self, store: SyncStore) -> None:
        self._db: sqlite3.Connection
        self._cipher: RecordCipher
        self._db, self._cipher = store.vault()
        with self._db:
            for statement in _TABLES:
                self._db.execute(statement)

    # ------------------------------------------------------------ jobs

    def add(self, job: Job, source: IO[bytes]) -> Job:
        """Copy ``source`` in, sealed chunk by chunk, and keep ``job`` with
        its size and sha256 filled in; all in one transaction."""
        digest, size = hashlib.sha256(), 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            index = 0
            while chunk := source.read(job.chunk_size):
                digest.update(chunk)
                size += len(chunk)
                self._db.execute(
                    "INSERT INTO file_chunks VALUES (?, ?, ?)",
                    (job.job, index, self._cipher.seal(chunk, self._chunk_aad(job.job, index))),
                )
                index += 1
            job.size, job.sha256 = size, digest.hexdigest()
            self._db.execute(
                "INSERT INTO file_jobs (job, sealed) VALUES (?, ?)", (job.job, self._seal(job))
            )
        return job

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def save(self, job: Job) -> None:
        """Store ``job``'s state (its bytes are deleted once it is no longer queued)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE file_jobs SET sealed = ? WHERE job = ?", (self._seal(job), job.job)
            )
            if job.state == JobState.DONE:
                self._db.execute("DELETE FROM file_chunks WHERE job = ?", (job.job,))

    def jobs(self) -> list[Job]:
        """Every attachment kept, oldest first."""
        rows = self._db.execute("SELECT job, sealed FROM file_jobs ORDER BY seq")
        return [self._open(job, sealed) for job, sealed in rows]

    def forget(self, job: str) -> None:
        """Drop a job and its bytes."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM file_chunks WHERE job = ?", (job,))
            self._db.execute("DELETE FROM file_jobs WHERE job = ?", (job,))

    def piece(self, job: Job, offset: int) -> bytes:
        """The job's bytes from ``offset`` to the end of the chunk holding it."""
        index, skip = divmod(offset, job.chunk_size)
        row = self._db.execute(
            "SELECT sealed FROM file_chunks WHERE job = ? AND idx = ?", (job.job, index)
        ).fetchone()
        if row is None:
            raise StoreIntegrityError(f"the bytes of attachment {job.job} are missing")
        return self._cipher.open(row[0], self._chunk_aad(job.job, index))[skip:]

    # ------------------------------------------------------------ cache

    def cached(self, sha256: str) -> bytes | None:
        """A downloaded file's bytes (None: not cached); checked against ``sha256``."""
        if not self.is_cached(sha256):
            return None
        return b"".join(self.cached_pieces(sha256))

    def cached_pieces(self, sha256: str) -> Iterator[bytes]:
        """A cached file's bytes, one sealed chunk at a time (never whole in
        memory; nothing if it is not cached). Raises
        :class:`StoreIntegrityError` after the last piece if they do not
        match ``sha256``: a caller that writes them out keeps nothing before then."""
        tag = self._cipher.tag("file", sha256)
        digest = hashlib.sha256()
        rows = self._db.execute(
            "SELECT idx, sealed FROM file_cache WHERE tag = ? ORDER BY idx", (tag,)
        ).fetchall()
        for idx, sealed in rows:
            piece = self._cipher.open(sealed, self._cache_aad(tag, idx))
            digest.update(piece)
            yield piece
        if rows and digest.hexdigest() != sha256:
            raise StoreIntegrityError("a cached file does not match its sha256")

    def is_cached(self, sha256: str) -> bool:
        tag = self._cipher.tag("file", sha256)
        row = self._db.execute("SELECT 1 FROM file_cache WHERE tag = ? LIMIT 1", (tag,))
        return row.fetchone() is not None

    # ------------------------------------------------------------ downloads under way

    def kept(self, sha256: str) -> int:
        """The bytes of an unfinished download of ``sha256`` kept so far."""
        tag = self._cipher.tag("file", sha256)
        row = self._db.execute("SELECT SUM(size) FROM file_parts WHERE tag = ?", (tag,))
        return int(row.fetchone()[0] or 0)

    def keep(self, sha256: str, piece: bytes) -> None:
        """Seal and keep the next ``piece`` of a download of ``sha256``."""
        if not piece:
            return
        tag = self._cipher.tag("file", sha256)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            (idx,) = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM file_parts WHERE tag = ?", (tag,)
            ).fetchone()
            sealed = self._cipher.seal(piece, self._cache_aad(tag, idx))
            self._db.execute(
                "INSERT INTO file_parts VALUES (?, ?, ?, ?)", (tag, idx, len(piece), sealed)
            )

    def finish(self, sha256: str, size: int) -> bool:
        """Move a download's pieces into the cache if together they are
        ``size`` bytes of ``sha256`` (True); otherwise drop them (False).
        One transaction: the file is cached whole or not at all."""
        tag = self._cipher.tag("file", sha256)
        digest, total = hashlib.sha256(), 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = self._db.execute(
                "SELECT idx, sealed FROM file_parts WHERE tag = ? ORDER BY idx", (tag,)
            )
            for idx, sealed in rows:
                piece = self._cipher.open(sealed, self._cache_aad(tag, idx))
                digest.update(piece)
                total += len(piece)
            whole = total == size and digest.hexdigest() == sha256
            if whole:
                self._db.execute("DELETE FROM file_cache WHERE tag = ?", (tag,))
                self._db.execute(
                    "INSERT INTO file_cache SELECT tag, idx, sealed FROM file_parts WHERE tag = ?",
                    (tag,),
                )
            self._db.execute("DELETE FROM file_parts WHERE tag = ?", (tag,))
        return whole

    def drop(self, sha256: str) -> None:
        """Forget an unfinished download of ``sha256``."""
        tag = self._cipher.tag("file", sha256)
        with self._db:
            self._db.execute("DELETE FROM file_parts WHERE tag = ?", (tag,))

    # ------------------------------------------------------------ sealing

    @staticmethod
    def _cache_aad(tag: bytes, index: int) -> bytes:
        """A cached piece's AAD (the same while it is a part, so it moves unchanged)."""
        return aad(b"file", tag, b"%d" % index)

    @staticmethod
    def _chunk_aad(job: str, index: int) -> bytes:
        return aad(b"file-chunk", job.encode(), b"%d" % index)

    def _seal(self, job: Job) -> bytes:
        return self._cipher.seal(
            json.dumps(asdict(job)).encode(), aad(b"file-job", job.job.encode())
        )

    def _open(self, job: str, sealed: bytes) -> Job:
        return Job(**json.loads(self._cipher.open(sealed, aad(b"file-job", job.encode()))))
