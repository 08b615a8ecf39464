"""The change log as its readers (pull, the CRM feed) see it: page sizes and
reads whose position came from a client's cursor."""

from __future__ import annotations

from dataclasses import dataclass

from fieldpush.backend.base import RecordStore
from fieldpush.errors import InvalidPosition
from fieldpush.sync.errors import SyncError
from fieldpush_client.protocol import ErrorCode

__all__ = ["Paging", "read_log"]


@dataclass(frozen=True, slots=True)
class Paging:
    """Page sizes of pull and feed replies (``sync_page_default``, ``sync_page_max``)."""

    default: int
    maximum: int

    def size(self, limit: int | None) -> int:
        """The page size for a request's ``limit`` (None: the default), at most the maximum."""
        return min(limit or self.default, self.maximum)


async def read_log(
    store: RecordStore, after: str | None, limit: int
) -> tuple[list[tuple[str, bytes]], bool]:
    """:meth:`RecordStore.read_log`; a position the store did not write (a
    forged cursor) is SyncError ``bad_request``."""
    try:
        return await store.read_log(after, limit)
    except InvalidPosition:
        raise SyncError(ErrorCode.BAD_REQUEST, "invalid cursor: send one from a reply") from None
