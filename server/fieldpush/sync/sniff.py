"""Content sniffing: whether a file's first bytes are of a media type. Pure.

A ``file`` field's ``content_types`` lists the media types it takes; a
reference declaring one of them is accepted only when the stored bytes start
as that type does (docs/attachments.md, "Content sniffing"). The schema is
refused at start when a field allows a type :data:`SNIFFERS` does not know,
so that no declared type goes unchecked.

Each sniffer looks at the first :data:`SNIFF_BYTES` bytes only (a file
shorter than that is given whole). ``text/plain`` is UTF-8 without NUL in
those bytes (a multi-byte character cut at the end of them is accepted).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["SNIFFERS", "SNIFF_BYTES", "matches"]

#: How many leading bytes of a file the sniffers are given.
SNIFF_BYTES: Final = 8192


def _ftyp(head: bytes, brands: frozenset[bytes]) -> bool:
    """An ISO base media file (``....ftyp<brand>``) whose major brand is one of ``brands``."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in brands


def _jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _webp(head: bytes) -> bool:
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _heic(head: bytes) -> bool:
    return _ftyp(head, frozenset({b"heic", b"heix", b"heif", b"mif1", b"msf1"}))


def _pdf(head: bytes) -> bool:
    return head.startswith(b"%PDF-")


def _m4a(head: bytes) -> bool:
    return _ftyp(head, frozenset({b"M4A ", b"M4B ", b"mp42", b"isom"}))


def _mpeg(head: bytes) -> bool:
    """MP3: an ID3v2 tag, or an MPEG audio frame sync (11 set bits, layer not 0)."""
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _ogg(head: bytes) -> bool:
    return head.startswith(b"OggS")


def _wav(head: bytes) -> bool:
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


#: Media type -> whether a file's first bytes are of it.
SNIFFERS: Final[Mapping[str, Callable[[bytes], bool]]] = MappingProxyType(
    {
        "image/jpeg": _jpeg,
        "image/png": _png,
        "image/webp": _webp,
        "image/heic": _heic,
        "image/heif": _heic,
        "application/pdf": _pdf,
        "audio/mp4": _m4a,
        "audio/m4a": _m4a,
        "audio/x-m4a": _m4a,
        "audio/mpeg": _mpeg,
        "audio/ogg": _ogg,
        "audio/wav": _wav,
        "audio/x-wav": _wav,
        "text/plain": _text,
    }
)


def matches(content_type: str, head: bytes) -> bool:
    """Whether ``head`` (a file's first :data:`SNIFF_BYTES`) is of
    ``content_type``; False for a type without a sniffer."""
    sniffer = SNIFFERS.get(content_type)
    return sniffer is not None and sniffer(head[:SNIFF_BYTES])
