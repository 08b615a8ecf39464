"""Finished files, stored once per content: :class:`FileStore` and its
filesystem implementation :class:`DirectoryStore`.

Layout of a :class:`DirectoryStore` rooted at ``files_dir``:
``sha256/<hex[0:2]>/<hex[2:4]>/<hex>``, directories mode 0700, files 0600.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, Protocol

__all__ = ["DirectoryStore", "FileStore", "is_sha256", "make_dirs"]

_HEX: Final = re.compile(r"[0-9a-f]{64}")
#: Bytes per chunk :meth:`DirectoryStore.read` yields.
READ_CHUNK_BYTES: Final = 256 * 1024


def is_sha256(text: str) -> bool:
    """True for a SHA-256 digest in lower-case hex (64 characters)."""
    return _HEX.fullmatch(text) is not None


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each mode 0700."""
    if not path.is_dir():
        make_dirs(path.parent)
        with contextlib.suppress(FileExistsError):  # made by another node meanwhile
            path.mkdir(mode=0o700)


def sync_dir(path: Path) -> None:
    """fsync a directory, so that a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore(Protocol):
    """Content-addressed files. Guarantees: a file is stored at most once per
    SHA-256; once :meth:`put` returns, the file is durable and every node
    sharing the store reads it; a stored file never changes."""

    async def put(self, source: Path, sha256: str) -> bool:
        """Take the local file ``source`` (whose SHA-256 the caller computed)
        in as ``sha256``; ``source`` is gone afterwards. True if the content
        was new, False if it was stored already (``source`` is then dropped)."""

    async def size(self, sha256: str) -> int | None:
        """The stored file's size in bytes; None if it is not stored."""

    def read(self, sha256: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        """The stored file's bytes from ``start`` up to ``stop`` (exclusive;
        None: the end), in chunks of at most 256 KiB; FileNotFoundError if absent."""


class DirectoryStore:
    """:class:`FileStore` on a directory that every node mounts (see the
    module docstring). ``source`` files must be on the same filesystem
    (the uploads live under the same root), so :meth:`put` is a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where ``sha256`` is stored (ValueError unless it is a digest)."""
        if not is_sha256(sha256):
            raise ValueError("not a sha256 digest")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    async def put(self, source: Path, sha256: str) -> bool:
        return await asyncio.to_thread(self._put, source, self.path(sha256))

    @staticmethod
    def _put(source: Path, target: Path) -> bool:
        if target.exists():
            source.unlink(missing_ok=True)
            return False
        make_dirs(target.parent)
        fd = os.open(source, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(source, 0o600)
        os.replace(source, target)
        sync_dir(target.parent)
        return True

    async def size(self, sha256: str) -> int | None:
        try:
            return (await asyncio.to_thread(self.path(sha256).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(
        self, sha256: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[bytes]:
        with open(self.path(sha256), "rb") as file:  # noqa: ASYNC230 (one small open)
            file.seek(start)
            left = None if stop is None else max(stop - start, 0)
            while left is None or left > 0:
                wanted = READ_CHUNK_BYTES if left is None else min(left, READ_CHUNK_BYTES)
                chunk = await asyncio.to_thread(file.read, wanted)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
