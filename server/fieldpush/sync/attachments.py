"""File references in records: checked against the uploads, and found for a download.

The sync layer does not know where uploads live: the node gives it an
:class:`UploadLookup` (``fieldpush.files.uploads.Uploads`` is one), so sync
and files stay independent (pyproject.toml's layers).

:class:`FileChecker` checks a reference a mutation sets
(docs/attachments.md, "File fields"): the upload exists, is complete, is the
sender's own, its SHA-256 and size are the reference's, and its first bytes
are of the declared ``content_type`` (:mod:`fieldpush.sync.sniff`). The
reference's shape, ``max_size`` and ``content_types`` were checked by the
schema before. A reference the record already holds in that field is not
checked again (a record edited later by someone else keeps a file uploaded
by the first).

:func:`readable_reference` answers a download: the reference to a file id
in a record the actor may read, in a field its role may read, as the record
stands now (the store's index of file ids may hold records that no longer
reference it).
"""

from __future__ import annotations

from typing import Any, Protocol

from fieldpush.sync import sniff
from fieldpush.sync.catalog import Catalog
from fieldpush.sync.codec import decode_state
from fieldpush.sync.rules import Actor, RecordState, reaches
from fieldpush.sync.schema import FieldSpec, RecordType

__all__ = ["FileChecker", "UploadFacts", "UploadLookup", "readable_reference", "stored_files"]


class UploadFacts(Protocol):
    """What the checker reads of an upload."""

    @property
    def owner(self) -> str: ...

    @property
    def length(self) -> int: ...

    @property
    def sha256(self) -> str | None:
        """The stored file's digest; None while the upload is unfinished."""


class UploadLookup(Protocol):
    """The uploads, as the sync layer sees them."""

    async def find(self, upload_id: str) -> UploadFacts | None:
        """The upload of that id, whoever uploaded it (None: there is none)."""

    async def head(self, sha256: str, limit: int) -> bytes:
        """The first ``limit`` bytes of the stored file (fewer if it is shorter)."""


class FileChecker:
    """Checks the file references a mutation sets (module docstring)."""

    def __init__(self, uploads: UploadLookup) -> None:
        self._uploads = uploads

    async def problem(
        self, user: str, spec: FieldSpec, ref: dict[str, Any], held: RecordState | None
    ) -> str | None:
        """What is wrong with reference ``ref`` (as the schema checked it) of
        field ``spec`` set by ``user`` on the record stored as ``held``, in
        plain English naming the field; None when it may be stored."""
        if held is not None and ref in stored_files(spec, held.value(spec.name)):
            return None  # the record holds it already
        name = spec.name
        upload = await self._uploads.find(ref["id"])
        if upload is None or upload.owner != user:
            return f"{name}: no upload {ref['id']} of yours (upload the file first)"
        if upload.sha256 is None:
            return f"{name}: upload {ref['id']} is not complete yet"
        if upload.sha256 != ref["sha256"] or upload.length != ref["size"]:
            return f"{name}: sha256 and size must be those of upload {ref['id']}"
        declared = ref["content_type"]
        if spec.content_types or declared in sniff.SNIFFERS:
            head = await self._uploads.head(upload.sha256, sniff.SNIFF_BYTES)
            if not sniff.matches(declared, head):
                return f"{name}: the file's content is not {declared}"
        return None


def stored_files(spec: FieldSpec, stored: Any) -> list[dict[str, Any]]:
    """The file references in a stored value of field ``spec`` (an
    ``append`` field's value is its plain list of items)."""
    if spec.rule == "append":
        return spec.files({"add": stored or [], "remove": []})
    return spec.files(stored)


async def readable_reference(
    catalog: Catalog, actor: Actor, file_id: str
) -> tuple[str, dict[str, Any]] | None:
    """The record key ``<type>:<rid>`` and the reference to ``file_id`` of a
    record ``actor`` may read, in a field its role may read, as stored now;
    None when there is none."""
    keys = await catalog.store.file_records(file_id)
    if not keys:
        return None
    stored, _ = await catalog.store.load(keys, [])
    for key, found in zip(keys, stored, strict=True):
        rtype = catalog.schema.types.get(key.partition(":")[0])
        state = decode_state(found)
        if rtype is None or state is None or state.deleted is not None:
            continue
        if not reaches(rtype, rtype.read.get(actor.role), actor, state):
            continue
        ref = _reference(rtype, actor, state, file_id)
        if ref is not None:
            return key, ref
    return None


def _reference(
    rtype: RecordType, actor: Actor, state: RecordState, file_id: str
) -> dict[str, Any] | None:
    for name in sorted(rtype.readable_fields(actor.role)):
        spec = rtype.fields[name]
        for ref in stored_files(spec, state.value(name)):
            if ref.get("id") == file_id:
                return ref
    return None
