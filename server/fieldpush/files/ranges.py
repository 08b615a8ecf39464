"""The conditional and range headers of a download (RFC 9110), parsed strictly. Pure.

:func:`byte_range` reads ``Range`` for a file of ``size`` bytes: one range of
the ``bytes`` unit, ``a-b``, ``a-`` or ``-n``, numbers of plain ASCII digits
(at most 18). A range of another unit is ignored (the whole file, as RFC
9110 says); anything else, several ranges included, and a range that cannot
be satisfied raise :class:`Unsatisfiable` (answered 416). :func:`matches`
reads ``If-None-Match`` / ``If-Range`` entity tags.
"""

from __future__ import annotations

import re
from typing import Final

from fieldpush.errors import FieldpushError

__all__ = ["Unsatisfiable", "byte_range", "matches"]

_RANGE: Final = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})")


class Unsatisfiable(FieldpushError):
    """A ``Range`` that is malformed, asks for several ranges, or lies
    outside the file; the message says which."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(first, last)`` byte (inclusive) that ``header`` asks for, the
    last cut to the file's end; None for the whole file."""
    if header is None:
        return None
    unit, equals, _ = header.partition("=")
    if equals and unit.strip().lower() != "bytes":
        return None  # another unit: ignored
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        raise Unsatisfiable(
            "Range must be one range bytes=first-last, bytes=first- or bytes=-count "
            "(at most 18 digits each)"
        )
    first, last = found.groups()
    if not first and not last:
        raise Unsatisfiable("Range bytes=- names no bytes")
    if not first:  # the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise Unsatisfiable(f"Range asks for no bytes of a {size}-byte file")
        return max(size - count, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start > end:
        raise Unsatisfiable(f"Range {start}-{end}: the first byte is after the last")
    if start >= size:
        raise Unsatisfiable(f"Range starts at byte {start} of a {size}-byte file")
    return start, min(end, size - 1)


def matches(header: str, etag: str) -> bool:
    """Whether the entity tags of ``header`` (comma-separated, or ``*``)
    name ``etag``, by the weak comparison (``W/`` is ignored)."""
    tags = [tag.strip() for tag in header.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)
