"""Attachments: files uploaded by tus from a queue in the encrypted store,
referenced from records through the offline queue, downloaded into an
encrypted cache (docs/sdk.md, "Attachments"; docs/attachments.md, "The SDK").

:meth:`Attachments.attach` copies the bytes into the store (sealed,
:mod:`fieldpush_client.filestore`) and returns an :class:`Attachment` at
once; nothing is sent then. :meth:`Attachments.upload` (run by
:class:`~fieldpush_client.batch.BatchSync` in every batch, within its byte
budget and its holds, or called by the app) sends the queue oldest first:

- a job without an upload creates one (``filename``, ``filetype``);
- a job that has one asks the server's offset first (``HEAD``), so an upload
  cut by a dropped signal, a killed app or a new client on the same store
  resumes where the server's bytes end: at most the chunk that was under way
  is sent again;
- then ``PATCH`` chunk by chunk (``chunk_size``, each with its sha256);
- complete, the reference ``{id, sha256, size, content_type, name}`` is
  queued as an ordinary edit (:meth:`SyncClient.edit
  <fieldpush_client.sync.SyncClient.edit>`): appended to a list-of-files
  field (``{"add": [value]}``) or set on a single file field, so conflicts,
  offline and refusals (:meth:`SyncStore.needs_attention
  <fieldpush_client.sync.SyncStore.needs_attention>`) apply as to any edit.

Failures: no answer, 5xx, 409/423 are retried after a jittered backoff, and
each job gets at most ``max_attempts`` tries per run before the run moves on
(the job stays queued, its ``error`` set: the next batch tries again). An
answer that is malformed or impossible (a wrong offset, a garbage header), a
413, a refused checksum ``max_attempts`` times, a 401/403 fail the job
(``state`` ``"failed"``, ``error`` and ``error_reason`` say why); 404/410 (the
server lost or expired the upload) start it again from byte 0, twice at most.

:meth:`Attachments.open_file` returns a referenced file's bytes (and
:meth:`Attachments.save_file` writes them to a path, a chunk at a time): from
the cache, or by ``GET /v1/files/{id}``. The bytes are sealed into the store
as they arrive, so a broken transfer resumes by ``Range`` from the bytes kept,
in the same call or after an app restart; they become the cached file only
once all of them matched the value's size and sha256. A mismatch, or bytes
beyond the size, raise and drop what was kept.
"""

from __future__ import annotations

import asyncio
import io
import logging
import mimetypes
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, Final, Literal

import httpx

from fieldpush_client.backoff import backoff_delays
from fieldpush_client.errors import FileTransferError
from fieldpush_client.fallback import token_subject
from fieldpush_client.filestore import FileStore, Job, JobState
from fieldpush_client.sync import SyncClient
from fieldpush_client.tus import TusSession

__all__ = ["DEFAULT_FILE_FIELDS", "Attachment", "Attachments"]

log = logging.getLogger("fieldpush_client.files")

#: The file fields of the default schema (config/schema.toml), for ``prefetch="own"``.
DEFAULT_FILE_FIELDS: Final[Mapping[str, Sequence[str]]] = {
    "follow_up": ("photos", "voice_notes"),
    "work_order": ("fault_photos",),
    "device": ("debug_files", "drawings"),
}
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_FAILS_AT_ONCE: Final = frozenset({"protocol", "too_large", "unauthorized", "forbidden", "refused"})
#: Times the server may lose an upload (404/410) before the job fails.
MAX_RESTARTS: Final = 2
Prefetch = Literal["none", "own"]
#: Whether the batch must pause now (BatchSync.held: a reason, or None).
HoldCheck = Callable[[], object]


class _Pieces:
    """A download's bytes on their way into the store: kept a chunk at a time
    as they arrive (:meth:`FileStore.keep`), and what is left on :meth:`flush`."""

    def __init__(self, files: FileStore, sha256: str, chunk_size: int) -> None:
        self._files, self._sha256, self._chunk_size = files, sha256, chunk_size
        self._buffer = bytearray()

    def add(self, piece: bytes) -> None:
        self._buffer += piece
        while len(self._buffer) >= self._chunk_size:
            self._files.keep(self._sha256, bytes(self._buffer[: self._chunk_size]))
            del self._buffer[: self._chunk_size]

    def flush(self) -> None:
        self._files.keep(self._sha256, bytes(self._buffer))
        self._buffer.clear()


class Attachment:
    """A live view of one attachment of the queue: ``id``, ``sent`` of
    ``size`` bytes, ``state`` (``"queued"``, ``"done"``, ``"rejected"``: the
    reference was refused and waits in needs-attention, ``"failed"``),
    ``error``, and ``value`` (the reference, once uploaded)."""

    __slots__ = ("_job", "_owner")

    def __init__(self, owner: Attachments, job: Job) -> None:
        self._owner = owner
        self._job = job

    @property
    def id(self) -> str:
        return self._job.job

    @property
    def sent(self) -> int:
        return self._job.sent

    @property
    def size(self) -> int:
        return self._job.size

    @property
    def error(self) -> str | None:
        return self._job.error

    @property
    def error_reason(self) -> str | None:
        return self._job.error_reason

    @property
    def mid(self) -> str | None:
        """The edit that wrote the reference (state ``done`` or ``rejected``)."""
        return self._job.mid

    @property
    def state(self) -> str:
        if self._job.state == JobState.DONE and self._job.mid in self._owner.refused_mids():
            return "rejected"
        return self._job.state

    @property
    def value(self) -> dict[str, Any] | None:
        return self._job.value() if self._job.state == JobState.DONE else None

    def __repr__(self) -> str:
        return f"<Attachment {self.id} {self.state} {self.sent}/{self.size}>"


class Attachments:
    """The upload queue and the download cache of one :class:`SyncClient`
    (see the module docstring).

    ``chunk_size``: bytes per ``PATCH`` (and per sealed row); ``prefetch``:
    ``"own"`` downloads, in each batch, the files referenced by the
    ``fields`` of records whose ``owner`` is the token's user, ``"none"``
    downloads on :meth:`open_file` only; ``on_progress(attachment)`` after
    every chunk the server took; ``max_attempts``: tries of one job per run.
    """

    def __init__(
        self,
        sync: SyncClient,
        *,
        chunk_size: int = 256 * 1024,
        prefetch: Prefetch = "none",
        fields: Mapping[str, Sequence[str]] = DEFAULT_FILE_FIELDS,
        on_progress: Callable[[Attachment], None] | None = None,
        max_attempts: int = 5,
        retry_base_s: float = 0.25,
        retry_cap_s: float = 10.0,
        timeout_s: float = 30.0,
    ) -> None:
        if chunk_size < 1 or max_attempts < 1:
            raise ValueError("chunk_size and max_attempts must be positive")
        if prefetch not in ("none", "own"):
            raise ValueError(f"prefetch must be 'none' or 'own', not {prefetch!r}")
        self.sync = sync
        self.chunk_size = chunk_size
        self.prefetch = prefetch
        self.fields = fields
        self.on_progress = on_progress
        self.max_attempts = max_attempts
        self._retry = partial(backoff_delays, base_s=retry_base_s, cap_s=retry_cap_s)
        self._timeout_s = timeout_s
        self._files = FileStore(sync.store)
        self._handles = {job.job: Attachment(self, job) for job in self._files.jobs()}
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ the queue

    def attach(
        self,
        record_type: str,
        rid: str,
        field: str,
        path_or_bytes: str | os.PathLike[str] | bytes,
        *,
        name: str | None = None,
        content_type: str | None = None,
        single: bool = False,
    ) -> Attachment:
        """Queue a file for ``field`` of the record (a list of files; a single
        file field with ``single``). The bytes are copied into the store now
        (a path is read once, in chunks; the app may delete it afterwards);
        nothing is sent until :meth:`upload`. ``name`` defaults to the
        path's file name (``"attachment"`` for bytes), ``content_type`` to
        the one guessed from the name (``application/octet-stream``)."""
        source: IO[bytes]
        if isinstance(path_or_bytes, bytes | bytearray | memoryview):
            source, default_name = io.BytesIO(bytes(path_or_bytes)), "attachment"
        else:
            path = Path(path_or_bytes)
            source, default_name = path.open("rb"), path.name
        name = name or default_name
        kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        job = Job(
            FileStore.new_id(), record_type, rid, field, single, name, kind, 0, "", self.chunk_size
        )
        with source:
            self._files.add(job, source)
        handle = self._handles[job.job] = Attachment(self, job)
        return handle

    def attachments(self) -> list[Attachment]:
        """Every attachment kept (queued, done, rejected or failed), oldest first."""
        return list(self._handles.values())

    def retry(self, attachment: Attachment) -> None:
        """Put a failed attachment back in the queue."""
        job = attachment._job
        if job.state == JobState.FAILED:
            job.state, job.error, job.error_reason = JobState.QUEUED, None, None
            self._files.save(job)

    def dismiss(self, attachment: Attachment) -> None:
        """Forget an attachment (done, or failed: its bytes go with it)."""
        self._files.forget(attachment.id)
        self._handles.pop(attachment.id, None)

    def refused_mids(self) -> set[str]:
        """The edits waiting in needs-attention."""
        return {item.mid for item in self.sync.store.needs_attention()}

    # ------------------------------------------------------------ uploads

    def _session(self, http: httpx.AsyncClient) -> TusSession:
        return TusSession(http, self.sync.client.http_base, self.sync.client.fresh_token)

    def _http(self) -> httpx.AsyncClient:
        context = self.sync.client.tls_context
        return httpx.AsyncClient(
            timeout=self._timeout_s, verify=True if context is None else context
        )

    async def upload(self, budget_bytes: int | None = None, held: HoldCheck | None = None) -> int:
        """Send the queue, oldest first, until it is empty, ``budget_bytes``
        were sent (a chunk under way is finished), or ``held()`` returns a
        reason (checked before every chunk); the bytes sent."""
        sent = 0
        async with self._lock, self._http() as http:
            session = self._session(http)
            for handle in list(self._handles.values()):
                job = handle._job
                if job.state != JobState.QUEUED:
                    continue
                remaining = None if budget_bytes is None else budget_bytes - sent
                if (remaining is not None and remaining <= 0) or (held and held()):
                    break
                sent += await self._push(session, handle, remaining, held)
        return sent

    async def _push(
        self,
        session: TusSession,
        handle: Attachment,
        budget: int | None,
        held: HoldCheck | None,
    ) -> int:
        """Upload one job as far as the budget goes; the bytes sent."""
        job, sent, attempts = handle._job, 0, 0
        delays: Iterator[float] = self._retry()
        known = False  # whether job.sent is the server's word in this run
        while True:
            try:
                if job.upload_id is None:
                    job.upload_id, job.sent = (
                        await session.create(job.size, job.name, job.content_type),
                        0,
                    )
                    self._files.save(job)
                    known = True
                elif not known:
                    job.sent = await session.offset(job.upload_id, job.size)
                    known = True
                if job.sent == job.size:
                    self._reference(job)
                    return sent
                if sent > 2 * job.size + job.chunk_size:
                    lost = FileTransferError(
                        f"the server keeps losing the bytes sent ({sent} for {job.size})",
                        reason="protocol",
                    )
                    return self._fail(job, lost, sent)
                if (budget is not None and sent >= budget) or (held and held()):
                    self._files.save(job)
                    return sent
                piece = self._files.piece(job, job.sent)
                job.sent = await session.patch(job.upload_id, job.sent, piece, job.size)
                sent += len(piece)
                attempts, job.error, job.error_reason = 0, None, None
                self._files.save(job)
                if self.on_progress is not None:
                    self.on_progress(handle)
            except FileTransferError as exc:
                known = False
                if exc.reason == "gone" and job.restarts < MAX_RESTARTS:
                    log.info("fieldpush upload %s lost by the server; from byte 0", job.job)
                    job.upload_id, job.sent, job.restarts = None, 0, job.restarts + 1
                    continue
                attempts += 1
                if (
                    exc.reason in _FAILS_AT_ONCE
                    or exc.reason == "gone"
                    or (not exc.retryable and attempts >= self.max_attempts)
                ):
                    return self._fail(job, exc, sent)
                if attempts >= self.max_attempts:
                    return self._pause(job, exc, sent)
                await asyncio.sleep(next(delays))
            except (httpx.HTTPError, OSError) as exc:
                known = False
                attempts += 1
                error = FileTransferError(f"no answer: {exc!r}", reason="network", retryable=True)
                if attempts >= self.max_attempts:
                    return self._pause(job, error, sent)
                await asyncio.sleep(next(delays))

    def _fail(self, job: Job, exc: FileTransferError, sent: int) -> int:
        log.warning("fieldpush upload %s failed: %s", job.job, exc)
        job.state, job.error, job.error_reason = JobState.FAILED, str(exc), exc.reason
        self._files.save(job)
        return sent

    def _pause(self, job: Job, exc: FileTransferError, sent: int) -> int:
        log.info("fieldpush upload %s: %s; trying at the next batch", job.job, exc)
        job.error, job.error_reason = str(exc), exc.reason
        self._files.save(job)
        return sent

    def _reference(self, job: Job) -> None:
        """The upload is complete: queue the edit that references it. Sent
        again after a crash between the two, an ``add`` adds nothing twice."""
        value = job.value()
        fields = {job.field: value if job.single else {"add": [value]}}
        job.mid = self.sync.edit(job.type, job.rid, fields).mid
        job.state, job.error, job.error_reason = JobState.DONE, None, None
        self._files.save(job)

    # ------------------------------------------------------------ downloads

    async def open_file(self, value: Mapping[str, Any]) -> bytes:
        """The bytes of the file a field ``value`` references: from the
        encrypted cache, else downloaded (and then cached). Raises
        :class:`FileTransferError` (``reason`` ``"integrity"``: the bytes are
        not the value's size and sha256; nothing is cached) or ValueError (not
        a file value). For large files, :meth:`save_file` never holds them whole."""
        await self._ensure_cached(value)
        return b"".join(self._files.cached_pieces(str(value["sha256"])))

    async def save_file(self, value: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
        """Write the referenced file to ``path`` (downloaded first if it is not
        cached), a chunk at a time: through a temporary file beside it that
        replaces ``path`` only once every byte matched the value's sha256.
        Same errors as :meth:`open_file`; ``path`` is untouched on any error."""
        await self._ensure_cached(value)
        target = Path(path)
        partial = target.with_name(f".{target.name}.{FileStore.new_id()}.part")
        try:
            with partial.open("wb") as out:
                for piece in self._files.cached_pieces(str(value["sha256"])):
                    out.write(piece)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    async def _ensure_cached(self, value: Mapping[str, Any]) -> None:
        upload_id, sha256, size = _file_of(value)
        if not self._files.is_cached(sha256):
            async with self._http() as http:
                await self._download(self._session(http), upload_id, sha256, size)

    async def _download(self, session: TusSession, upload_id: str, sha256: str, size: int) -> None:
        """Download into the cache, resuming from the pieces kept of an
        earlier attempt (this run's or a previous app run's): each attempt
        asks only for the bytes after them (``Range``)."""
        delays: Iterator[float] = self._retry()
        for attempt in range(1, self.max_attempts + 1):
            pieces = _Pieces(self._files, sha256, self.chunk_size)
            try:
                try:
                    await session.download(upload_id, self._files.kept(sha256), size, pieces.add)
                finally:
                    pieces.flush()
                break
            except (httpx.HTTPError, OSError) as exc:
                if attempt == self.max_attempts:
                    raise FileTransferError(
                        f"downloading {upload_id}: no answer: {exc!r}",
                        reason="network",
                        retryable=True,
                    ) from exc
            except FileTransferError as exc:
                if not exc.retryable:
                    self._files.drop(sha256)
                    raise
                if attempt == self.max_attempts:
                    raise
            await asyncio.sleep(next(delays))
        if not self._files.finish(sha256, size):
            raise FileTransferError(
                f"the file {upload_id} is not the {size} bytes of sha256 {sha256}",
                reason="integrity",
            )

    async def prefetch_own(
        self, budget_bytes: int | None = None, held: HoldCheck | None = None
    ) -> int:
        """With ``prefetch="own"``: download the files referenced by the
        ``fields`` of records the token's user owns, not cached yet, until
        ``budget_bytes`` or ``held()``; the bytes downloaded. A file that
        fails is logged and left for :meth:`open_file`."""
        if self.prefetch != "own":
            return 0
        user = token_subject(await self.sync.client.fresh_token())
        got = 0
        async with self._http() as http:
            session = self._session(http)
            for value in self._owned_values(user):
                if (budget_bytes is not None and got >= budget_bytes) or (held and held()):
                    break
                upload_id, sha256, size = _file_of(value)
                if self._files.is_cached(sha256):
                    continue
                try:
                    await self._download(session, upload_id, sha256, size)
                except FileTransferError as exc:
                    log.warning("fieldpush prefetch of %s failed: %s", upload_id, exc)
                    continue
                got += size
        return got

    def _owned_values(self, user: str | None) -> Iterator[Mapping[str, Any]]:
        for record_type, names in self.fields.items():
            for record in self.sync.store.records(record_type).values():
                if user is None or record.get("owner") != user:
                    continue
                for name in names:
                    values = record.get(name)
                    for value in values if isinstance(values, list) else [values]:
                        if isinstance(value, Mapping):
                            try:
                                _file_of(value)
                            except ValueError:
                                continue
                            yield value

    async def run_batch(self, budget_bytes: int | None, held: HoldCheck | None) -> int:
        """One batch's file work (:class:`~fieldpush_client.batch.BatchSync`):
        the uploads, then with what is left of the budget the prefetch; the bytes moved."""
        moved = await self.upload(budget_bytes, held)
        left = None if budget_bytes is None else budget_bytes - moved
        if left is None or left > 0:
            moved += await self.prefetch_own(left, held)
        return moved


def _file_of(value: Mapping[str, Any]) -> tuple[str, str, int]:
    """The id, sha256 and size of a file value; ValueError if it is not one."""
    upload_id, sha256, size = value.get("id"), value.get("sha256"), value.get("size")
    if (
        not isinstance(upload_id, str)
        or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", upload_id)
        or not isinstance(sha256, str)
        or not _SHA256.fullmatch(sha256)
        or not isinstance(size, int)
        or isinstance(size, bool)
        or size < 0
    ):
        raise ValueError(f"not a file value: {dict(value)!r}")
    return upload_id, sha256, size
