"""The tus 1.0.0 request headers, parsed strictly; no I/O.

Every parser takes the header's raw value (None: not sent) and returns the
value or raises :class:`TusError` with the status the tus protocol gives
(400 for anything malformed). Nothing here trusts a client: numbers are plain
decimal digits of bounded length, metadata is ``key base64`` pairs with
standard, padded base64 and UTF-8 values without control characters.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from fieldpush.errors import FieldpushError

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "EXTENSIONS",
    "OFFSET_CONTENT_TYPE",
    "TUS_VERSION",
    "Checksum",
    "Metadata",
    "TusError",
    "check_version",
    "parse_checksum",
    "parse_metadata",
    "parse_number",
]

TUS_VERSION: Final = "1.0.0"
EXTENSIONS: Final = ("creation", "creation-with-upload", "termination", "checksum", "expiration")
CHECKSUM_ALGORITHMS: Final = ("sha256",)
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"

#: Decimal digits at most in ``Upload-Length`` / ``Upload-Offset`` (2**63 has 19).
MAX_DIGITS: Final = 18
#: ``Upload-Metadata`` bytes at most, and pairs at most.
MAX_METADATA_BYTES: Final = 4096
MAX_METADATA_PAIRS: Final = 16
#: ``filename`` characters at most.
MAX_NAME_CHARS: Final = 255

_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-]{0,63}"
_MEDIA_TYPE = re.compile(f"{_TOKEN}/{_TOKEN}")


class TusError(FieldpushError):
    """Ends a tus request with ``status``; ``message`` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Metadata:
    """What fieldpush keeps of ``Upload-Metadata``: the file's name and type."""

    name: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Checksum:
    """``Upload-Checksum``: the algorithm and the digest's bytes."""

    algorithm: str
    digest: bytes


def check_version(value: str | None) -> None:
    """412 unless ``Tus-Resumable`` is exactly 1.0.0 (a missing one included)."""
    if value != TUS_VERSION:
        raise TusError(412, f"Tus-Resumable must be {TUS_VERSION}")


def parse_number(header: str, value: str | None) -> int:
    """A required non-negative decimal header (``Upload-Length``,
    ``Upload-Offset``): 400 if missing, signed, not decimal digits, or longer
    than 18 digits."""
    if value is None:
        raise TusError(400, f"{header} is required")
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        raise TusError(400, f"{header} must be a non-negative decimal number of at most 18 digits")
    return int(value)


def _value(key: str, encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise TusError(400, f"Upload-Metadata: the value of {key} is not base64 of UTF-8") from None
    if not text.isprintable():
        raise TusError(400, f"Upload-Metadata: the value of {key} has control characters")
    return text


def _name(text: str) -> str:
    """A file name, never a path: no separators, no ``.``/``..``, no NUL."""
    if not 0 < len(text) <= MAX_NAME_CHARS or text in (".", "..") or any(c in text for c in "/\\"):
        raise TusError(
            400, f"Upload-Metadata: filename must be 1 to {MAX_NAME_CHARS} characters, no path"
        )
    return text


def parse_metadata(value: str | None) -> Metadata:
    """``Upload-Metadata``: comma-separated ``key base64-value`` pairs (a key
    alone means an empty value); keys unique. ``filename`` must be a name, not
    a path; ``filetype`` a media type; other keys are checked and dropped.
    400 for anything else, or beyond 4096 bytes or 16 pairs."""
    if value is None or value == "":
        return Metadata()
    if len(value) > MAX_METADATA_BYTES or not value.isascii():
        raise TusError(400, f"Upload-Metadata must be ASCII of at most {MAX_METADATA_BYTES} bytes")
    pairs = value.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise TusError(400, f"Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs")
    seen: dict[str, str] = {}
    for pair in pairs:
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not _KEY.fullmatch(parts[0]):
            raise TusError(400, "Upload-Metadata must be 'key base64' pairs separated by commas")
        key = parts[0]
        if key in seen:
            raise TusError(400, f"Upload-Metadata: {key} is given twice")
        seen[key] = _value(key, parts[1]) if len(parts) == 2 else ""
    content_type = seen.get("filetype")
    if content_type is not None and not _MEDIA_TYPE.fullmatch(content_type):
        raise TusError(400, "Upload-Metadata: filetype must be a media type such as image/jpeg")
    name = seen.get("filename")
    return Metadata(name=None if name is None else _name(name), content_type=content_type)


def parse_checksum(value: str | None) -> Checksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` (None: not sent): 400
    if malformed or the digest's length is wrong, and for an algorithm other
    than sha256 (the protocol's answer to an unsupported algorithm)."""
    if value is None:
        return None
    algorithm, _, encoded = value.partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(400, f"Upload-Checksum: unsupported algorithm; use {CHECKSUM_ALGORITHMS[0]}")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise TusError(400, "Upload-Checksum: the digest is not base64") from None
    if len(digest) != 32:
        raise TusError(400, "Upload-Checksum: a sha256 digest is 32 bytes")
    return Checksum(algorithm, digest)
