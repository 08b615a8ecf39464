"""What the sync engine stores and hands out, as bytes and text. Pure.

- Record states, mutation results and change-log entries are msgpack
  (:func:`pack` / :func:`unpack`; :func:`encode_state` / :func:`decode_state`
  for a record: per field ``[value, wall_ms, counter, device]``, its
  tombstone stamp, and per ``append`` field its log entries
  ``[item, wall_ms, counter, device, position]``).

Stored-format compatibility: ``"l"`` (the log entries) was added with the
``append`` rule. A record written before has none; its list fields load as
before and an ``append`` field's log is then read from its plain list
(:meth:`RecordState.log <fieldpush.sync.rules.RecordState.log>`). The value in
``"f"`` stays the plain list, so a node without the rule reads the record too.
- Cursors are opaque to clients: a msgpack list, base64url without padding.
  A :class:`LogCursor` (``["l", position, types]``) reads the change log after a
  position; a :class:`SnapshotCursor` (``["s", top, type, rid, types]``)
  continues a full download after record ``rid`` of ``type``, then reads the
  log from ``top``, where it was when the download began. ``types`` is the
  :func:`types_digest` of the type set (and data classes) the cursor was
  pulled with: it is valid for that selection only (the puller refuses it with
  another). Cursors without it
  (``["l", position]``, ``["s", top, type, rid]``: handed out before issue 13, and
  the CRM's feed) are bound to no type set and keep working with any.

:func:`decode_cursor` accepts only what :func:`encode_cursor` makes: any other
text (a forged or damaged cursor) is a :class:`~fieldpush.sync.errors.SyncError`
``bad_request``, never another exception. The positions inside are checked by
the record store that wrote them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

import msgpack

from fieldpush.backend.base import StoredRecord
from fieldpush.sync.appendlog import Log
from fieldpush.sync.errors import SyncError
from fieldpush.sync.hlc import Stamp
from fieldpush.sync.rules import RecordState
from fieldpush.sync.schema import CORE
from fieldpush_client.protocol import MAX_CURSOR_LENGTH, ErrorCode

__all__ = [
    "ALL_TYPES",
    "Cursor",
    "EntryKind",
    "LogCursor",
    "SnapshotCursor",
    "decode_cursor",
    "decode_state",
    "encode_cursor",
    "encode_state",
    "pack",
    "types_digest",
    "unpack",
]

#: The digest of "every readable type" (a pull without ``types``).
ALL_TYPES = "*"


class EntryKind(StrEnum):
    """A change-log entry's ``kind``: a change that was applied, or one a phone
    proposed for an ``mdm`` field (the CRM decides)."""

    APPLIED = "applied"
    PROPOSAL = "proposal"


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False)


def encode_state(state: RecordState) -> bytes:
    """The stored form of ``state`` (its version is the store's, not encoded)."""
    deleted = state.deleted
    return pack(
        {
            "f": {name: [value, *stamp] for name, (value, stamp) in state.fields.items()},
            "x": list(deleted) if deleted is not None else None,
            **({"l": {name: log.rows() for name, log in state.logs.items()}} if state.logs else {}),
        }
    )


def decode_state(stored: StoredRecord | None) -> RecordState | None:
    """The state of a stored record, with the store's version (None: none stored)."""
    if stored is None:
        return None
    raw = unpack(stored.blob)
    deleted = raw.get("x")
    return RecordState(
        fields={name: (v[0], Stamp(v[1], v[2], v[3])) for name, v in raw["f"].items()},
        deleted=Stamp(*deleted) if deleted is not None else None,
        version=stored.version,
        logs={name: Log(rows) for name, rows in raw.get("l", {}).items()},
    )


def types_digest(types: Sequence[str] | None, classes: Sequence[str] | None = None) -> str:
    """Which selection a cursor belongs to: the type set, and the data classes
    when they are not the core data alone (``classes`` None or ``["core"]``:
    the digest of before the batch class, so those cursors stay valid).

    :data:`ALL_TYPES` for a core pull without ``types``, else 16 hex digits of
    SHA-256 over the sorted, distinct names as a JSON list (order and repeats
    in a request do not matter); with other classes, over the JSON list of
    the types (``"*"`` for every type) and the sorted, distinct classes."""
    chosen = sorted(set(classes)) if classes is not None else [CORE]
    if chosen == [CORE]:
        if types is None:
            return ALL_TYPES
        selection: Any = sorted(set(types))
    else:
        selection = [sorted(set(types)) if types is not None else ALL_TYPES, chosen]
    names = json.dumps(selection, ensure_ascii=False).encode()
    return hashlib.sha256(names).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LogCursor:
    """Read the change log after ``position`` (a record store's position);
    ``types``: the :func:`types_digest` it is valid for (None: any)."""

    position: str
    types: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotCursor:
    """Continue a full download after record ``after`` of ``type_name``; the
    log was at ``top`` when the download began."""

    top: str
    type_name: str
    after: str
    types: str | None = None


Cursor: TypeAlias = LogCursor | SnapshotCursor

_INVALID = "invalid cursor: send one from a reply, or none"


def _is_digest(text: str) -> bool:
    """What :func:`types_digest` returns: ``*`` or 16 lowercase hex digits."""
    return text == ALL_TYPES or (len(text) == 16 and all(c in "0123456789abcdef" for c in text))


def encode_cursor(cursor: Cursor) -> str:
    parts: list[str]
    if isinstance(cursor, LogCursor):
        parts = ["l", cursor.position]
    else:
        parts = ["s", cursor.top, cursor.type_name, cursor.after]
    if cursor.types is not None:
        parts.append(cursor.types)
    return base64.urlsafe_b64encode(pack(parts)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor ``text`` encodes; SyncError ``bad_request`` if it is not one
    (longer than any cursor this module makes, too)."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise SyncError(ErrorCode.BAD_REQUEST, _INVALID)
    try:
        parts = unpack(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgpack.UnpackException):  # binascii.Error is a ValueError
        raise SyncError(ErrorCode.BAD_REQUEST, _INVALID) from None
    if isinstance(parts, list) and all(isinstance(part, str) for part in parts):
        match parts:
            case ["l", position]:
                return LogCursor(position)
            case ["l", position, types] if _is_digest(types):
                return LogCursor(position, types)
            case ["s", top, type_name, after]:
                return SnapshotCursor(top, type_name, after)
            case ["s", top, type_name, after, types] if _is_digest(types):
                return SnapshotCursor(top, type_name, after, types)
    raise SyncError(ErrorCode.BAD_REQUEST, _INVALID)
