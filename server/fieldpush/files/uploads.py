"""Unfinished uploads on the shared directory, and how they become files.

Layout under ``files_dir`` (every node of a cluster mounts the same one):
``uploads/<k>/<id>.json`` (the :class:`~fieldpush.files.info.UploadInfo`),
``uploads/<k>/<id>.part`` (the bytes so far) and ``uploads/<k>/quota.lock``,
where ``<k>`` is the first 16 hex digits of the SHA-256 of the owner's user id
and the upload id starts with it (so an id names its directory; the owner is
checked against the info). Finished files go to the :class:`FileStore`.

Guarantees:

- The offset in the info never runs ahead of the bytes on disk: bytes are
  written and fsynced before the info that counts them is renamed in.
- A chunk refused (checksum mismatch, body beyond ``Upload-Length``, a
  failure) leaves the upload as it was before the chunk; a chunk cut by the
  client keeps what arrived, unless it carried ``Upload-Checksum`` (then it
  cannot be verified and nothing of it is kept).
- One writer per upload across the cluster (``flock`` on the part file);
  another PATCH meanwhile is 423.
- The declared length and the owner's quota (unfinished plus finished bytes)
  are checked before anything is stored; quota checks of one owner are
  serialised by ``quota.lock``.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

from fieldpush.errors import FieldpushError
from fieldpush.files.headers import Checksum, Metadata, TusError
from fieldpush.files.info import UploadInfo, decode, encode
from fieldpush.files.store import FileStore, make_dirs, sync_dir
from fieldpush.metrics import Metrics

__all__ = ["Interrupted", "Uploads", "is_upload_id"]

#: Bytes held in memory per PATCH at most before they are written.
WRITE_BUFFER_BYTES: Final = 64 * 1024
#: Running SHA-256 states kept per node (others are recomputed from the part).
HASHERS_KEPT: Final = 256

_ID: Final = re.compile(r"[0-9a-f]{48}")
_KEY_CHARS: Final = 16


class Interrupted(FieldpushError):
    """The client went away in the middle of a chunk (raised by the chunk
    iterator given to :meth:`Uploads.append`)."""


def is_upload_id(text: str) -> bool:
    """True for the shape of an id :meth:`Uploads.create` makes."""
    return _ID.fullmatch(text) is not None


def owner_key(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:_KEY_CHARS]


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    sync_dir(path.parent)


def _read_info(path: Path) -> UploadInfo | None:
    try:
        return decode(path.read_bytes())
    except FileNotFoundError:
        return None


def _hash_prefix(path: Path, offset: int) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        left = offset
        while left:
            block = file.read(min(left, 1 << 20))
            if not block:
                raise FieldpushError(f"{path.name} is shorter than its offset")
            hasher.update(block)
            left -= len(block)
    return hasher


class Uploads:
    """tus uploads for one node (see the module docstring). ``clock`` gives
    Unix seconds (for ``Upload-Expires``)."""

    def __init__(
        self,
        root: Path,
        store: FileStore,
        metrics: Metrics,
        *,
        max_bytes: int,
        quota_bytes: int,
        expiry_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root / "uploads"
        self.store = store
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self.expiry_s = expiry_s
        self.clock = clock
        self._hashers: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        folder = self.root / upload_id[:_KEY_CHARS]
        return folder / f"{upload_id}.json", folder / f"{upload_id}.part"

    # ------------------------------------------------------------ create

    async def create(self, owner: str, length: int, metadata: Metadata) -> UploadInfo:
        """A new, empty upload of ``length`` bytes; 413 beyond ``max_bytes``
        or beyond the owner's quota. A zero-length upload is complete at once."""
        if length > self.max_bytes:
            raise TusError(413, f"Upload-Length {length} is over the limit of {self.max_bytes}")
        key = owner_key(owner)
        info = UploadInfo(
            id=key + secrets.token_hex(16),
            owner=owner,
            length=length,
            offset=0,
            expires=self.clock() + self.expiry_s,
            name=metadata.name,
            content_type=metadata.content_type,
        )
        await asyncio.to_thread(self._create, info, self.root / key)
        if length == 0:
            return await self._finish(info, self._paths(info.id)[1], hashlib.sha256().hexdigest())
        return info

    def _create(self, info: UploadInfo, folder: Path) -> None:
        make_dirs(folder)
        fd = os.open(folder / "quota.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            used = sum(
                found.length
                for path in folder.glob("*.json")
                if (found := _read_info(path)) is not None and found.owner == info.owner
            )
            if used + info.length > self.quota_bytes:
                raise TusError(
                    413,
                    f"Upload-Length {info.length} would exceed the quota of "
                    f"{self.quota_bytes} bytes ({used} in use)",
                )
            info_path, part_path = self._paths(info.id)
            os.close(os.open(part_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            _write_atomic(info_path, encode(info))
        finally:
            os.close(fd)  # releases the lock

    # ------------------------------------------------------------ read

    async def find(self, upload_id: str) -> UploadInfo | None:
        """The upload of that id, whoever uploaded it, expired or not (None:
        no upload of that id, or not an id's shape). For the checks of file
        references and downloads; the tus routes use :meth:`get`."""
        if not is_upload_id(upload_id):
            return None
        return await asyncio.to_thread(_read_info, self._paths(upload_id)[0])

    async def head(self, sha256: str, limit: int) -> bytes:
        """The first ``limit`` bytes of stored file ``sha256`` (fewer if it is
        shorter); FileNotFoundError if it is not stored."""
        return b"".join([chunk async for chunk in self.store.read(sha256, 0, limit)])

    async def get(self, upload_id: str, owner: str) -> UploadInfo:
        """The owner's upload; 404 if there is none of that id for this
        owner (another user's upload is 404 too), 410 once it has expired."""
        info = await self.find(upload_id)
        if info is None or info.owner != owner:
            raise TusError(404, "no such upload")
        if not info.complete and info.expires <= self.clock():
            raise TusError(410, "the upload has expired")
        return info

    # ------------------------------------------------------------ append

    async def append(
        self,
        info: UploadInfo,
        offset: int,
        chunks: AsyncIterator[bytes],
        checksum: Checksum | None,
        declared: int | None,
    ) -> UploadInfo:
        """Write one PATCH's body at ``offset`` (see the guarantees); the
        upload as it is afterwards. 403 once complete, 409 at another offset
        than the upload's, 413 for a body beyond ``Upload-Length`` (up front
        when ``declared``, the Content-Length, says so), 460 for a checksum
        mismatch, 423 while another PATCH writes. :class:`Interrupted` from
        ``chunks`` is re-raised after what arrived is kept."""
        info_path, part_path = self._paths(info.id)
        if info.complete:
            raise TusError(403, "the upload is complete")
        try:
            fd = os.open(part_path, os.O_RDWR)
        except FileNotFoundError:
            raise TusError(404, "no such upload") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TusError(423, "another request is writing this upload") from None
            current = await asyncio.to_thread(_read_info, info_path)
            if current is None:
                raise TusError(404, "no such upload")
            if current.complete:
                raise TusError(403, "the upload is complete")
            if offset != current.offset:
                raise TusError(409, f"Upload-Offset must be {current.offset}")
            if declared is not None and declared > current.length - offset:
                raise TusError(
                    413, f"the body is {declared} bytes; {current.length - offset} remain"
                )
            return await self._write(current, fd, part_path, chunks, checksum)
        finally:
            os.close(fd)

    async def _hasher(self, info: UploadInfo, part_path: Path) -> hashlib._Hash:
        kept = self._hashers.pop(info.id, None)
        if kept is not None and kept[0] == info.offset:
            return kept[1]
        return await asyncio.to_thread(_hash_prefix, part_path, info.offset)

    def _keep_hasher(self, info: UploadInfo, hasher: hashlib._Hash) -> None:
        self._hashers[info.id] = (info.offset, hasher)
        while len(self._hashers) > HASHERS_KEPT:
            self._hashers.popitem(last=False)

    async def _write(
        self,
        info: UploadInfo,
        fd: int,
        part_path: Path,
        chunks: AsyncIterator[bytes],
        checksum: Checksum | None,
    ) -> UploadInfo:
        hasher = await self._hasher(info, part_path)
        whole = hasher.copy()
        chunk_hash = hashlib.sha256()
        await asyncio.to_thread(os.ftruncate, fd, info.offset)  # a crashed writer's tail
        os.lseek(fd, info.offset, os.SEEK_SET)
        remaining = info.length - info.offset
        written = 0
        buffer = bytearray()
        try:
            async for piece in chunks:
                if written + len(buffer) + len(piece) > remaining:
                    raise TusError(413, f"the body is longer than the {remaining} bytes left")
                buffer += piece
                if len(buffer) >= WRITE_BUFFER_BYTES:
                    written += await self._flush(fd, buffer, whole, chunk_hash)
            written += await self._flush(fd, buffer, whole, chunk_hash)
        except Interrupted:
            if checksum is None:  # keep what arrived (a failure here: the next PATCH truncates)
                written += await self._flush(fd, buffer, whole, chunk_hash)
                await self._advance(info, fd, part_path, written, whole)
            else:
                self._roll_back(info, fd, hasher)
            raise
        except BaseException:
            self._roll_back(info, fd, hasher)
            raise
        if checksum is not None and chunk_hash.digest() != checksum.digest:
            self.metrics.files_checksum_failures += 1
            self._roll_back(info, fd, hasher)
            raise TusError(460, "Upload-Checksum does not match the chunk")
        return await self._advance(info, fd, part_path, written, whole)

    def _roll_back(self, info: UploadInfo, fd: int, hasher: hashlib._Hash) -> None:
        """Drop the chunk's bytes: the upload is as it was before it."""
        os.ftruncate(fd, info.offset)
        self._keep_hasher(info, hasher)

    @staticmethod
    async def _flush(
        fd: int, buffer: bytearray, whole: hashlib._Hash, chunk_hash: hashlib._Hash
    ) -> int:
        data = bytes(buffer)
        buffer.clear()
        whole.update(data)
        chunk_hash.update(data)
        view = memoryview(data)
        while view:
            view = view[await asyncio.to_thread(os.write, fd, view) :]
        return len(data)

    async def _advance(
        self, info: UploadInfo, fd: int, part_path: Path, written: int, hasher: hashlib._Hash
    ) -> UploadInfo:
        """fsync the bytes, then record the new offset (or finish)."""
        await asyncio.to_thread(os.fsync, fd)
        self.metrics.files_bytes_received += written
        moved = info.at(info.offset + written, self.clock() + self.expiry_s)
        if moved.offset == moved.length:
            return await self._finish(moved, part_path, hasher.hexdigest())
        await asyncio.to_thread(_write_atomic, self._paths(info.id)[0], encode(moved))
        self._keep_hasher(moved, hasher)
        return moved

    async def _finish(self, info: UploadInfo, part_path: Path, sha256: str) -> UploadInfo:
        """Move the complete part into the store, then mark the upload complete."""
        await self.store.put(part_path, sha256)
        done = info.finished(sha256)
        await asyncio.to_thread(_write_atomic, self._paths(info.id)[0], encode(done))
        self._hashers.pop(info.id, None)
        self.metrics.files_uploads_completed += 1
        return done

    # ------------------------------------------------------------ remove

    async def terminate(self, info: UploadInfo) -> None:
        """Remove the upload (``DELETE``): an unfinished one's bytes go; a
        finished one's stored file stays (other uploads may share it), only
        this upload's claim on it, and on the owner's quota, goes."""
        await asyncio.to_thread(self._remove, info.id)
        self._hashers.pop(info.id, None)

    def _remove(self, upload_id: str) -> None:
        info_path, part_path = self._paths(upload_id)
        info_path.unlink(missing_ok=True)
        part_path.unlink(missing_ok=True)
        sync_dir(info_path.parent)

    async def expire(self) -> int:
        """Remove every unfinished upload past its expiry that no request is
        writing now; how many were removed. Any node may run it at any time."""
        removed = await asyncio.to_thread(self._expire, self.clock())
        for upload_id in removed:
            self._hashers.pop(upload_id, None)
        self.metrics.files_uploads_expired += len(removed)
        return len(removed)

    def _expire(self, now: float) -> list[str]:
        removed = []
        for info_path in self.root.glob("*/*.json"):
            info = _read_info(info_path)
            if info is None or info.complete or info.expires > now:
                continue
            try:
                fd = os.open(info_path.with_suffix(".part"), os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                again = _read_info(info_path)  # a PATCH may have renewed it meanwhile
                if again is not None and not again.complete and again.expires <= now:
                    self._remove(info.id)  # under the lock: no PATCH starts meanwhile
                    removed.append(info.id)
            except BlockingIOError:
                pass  # being written: not idle
            finally:
                os.close(fd)
        return removed
