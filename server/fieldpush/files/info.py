"""One upload's metadata, as stored beside its bytes (``uploads/<k>/<id>.json``).

An :class:`UploadInfo` is written whole (temp file, fsync, rename) by
:mod:`fieldpush.files.uploads`, so a reader on any node sees either the old or
the new version, never a mix. :func:`decode` refuses anything that is not
exactly what :func:`encode` writes (a damaged file reads as absent).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["UploadInfo", "decode", "encode"]


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """An upload: its ``id``, ``owner`` (user id), declared ``length``, the
    ``offset`` of the bytes on disk, ``expires`` (Unix seconds; unfinished
    uploads only), the file's ``name`` and ``content_type`` from
    ``Upload-Metadata``, and ``sha256`` (hex) once complete."""

    id: str
    owner: str
    length: int
    offset: int
    expires: float
    name: str | None = None
    content_type: str | None = None
    sha256: str | None = None

    @property
    def complete(self) -> bool:
        return self.sha256 is not None

    def at(self, offset: int, expires: float) -> UploadInfo:
        """This upload with its bytes on disk up to ``offset``, expiring at ``expires``."""
        return replace(self, offset=offset, expires=expires)

    def finished(self, sha256: str) -> UploadInfo:
        """This upload, complete, its file stored as ``sha256``."""
        return replace(self, offset=self.length, sha256=sha256)


_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "owner": (str,),
    "length": (int,),
    "offset": (int,),
    "expires": (int, float),
    "name": (str, type(None)),
    "content_type": (str, type(None)),
    "sha256": (str, type(None)),
}


def encode(info: UploadInfo) -> bytes:
    """The info's JSON bytes."""
    return json.dumps(asdict(info), separators=(",", ":")).encode()


def decode(data: bytes) -> UploadInfo | None:
    """The info :func:`encode` wrote, or None for anything else."""
    try:
        value: Any = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.keys() != _TYPES.keys():
        return None
    for key, types in _TYPES.items():
        if isinstance(value[key], bool) or not isinstance(value[key], types):
            return None
    if not 0 <= value["offset"] <= value["length"]:
        return None
    return UploadInfo(**value)
