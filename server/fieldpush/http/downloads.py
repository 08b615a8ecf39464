"""``GET /v1/files/{id}``: a file, to those who may read it (docs/attachments.md, "Downloads").

Allowed to the file's uploader, and to a caller who may read a record (its
type's read scope, the field's read roles) whose current value references
the id (:meth:`SyncEngine.file_reference
<fieldpush.sync.engine.SyncEngine.file_reference>`). Anyone else, and an id
of no file, get the same 404 (same body, same headers): no answer tells
whether a file exists. 401 without a valid token.

The answer streams the stored file (never held whole): ``ETag`` is the
quoted SHA-256, ``Accept-Ranges: bytes``, ``Cache-Control: private``,
``X-Content-Type-Options: nosniff`` and ``Content-Disposition: attachment``
(a stored file is never rendered as a page of this origin). ``If-None-Match``
naming the ETag (or ``*``) is 304; one ``Range`` is 206 with
``Content-Range`` (``If-Range`` other than the ETag: the whole file); a
malformed, multiple or unsatisfiable range is 416
(:mod:`fieldpush.files.ranges`). ``HEAD`` stays tus's (``fieldpush.http.files``).

Each answer but a 401 is one audit entry ``file.read``, target
``file/<id>``: outcome ``ok`` (fields ``sha256``, ``bytes`` sent, ``range``,
``via`` ``uploader`` or the record ``<type>/<rid>`` that grants it),
``ok:not_modified``, ``refused:not_found`` or ``refused:range``. When the
trail cannot take entries the download is refused (503) before anything is
read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fieldpush.files.ranges import Unsatisfiable, byte_range, matches
from fieldpush.files.uploads import is_upload_id
from fieldpush.http.toolkit import caller
from fieldpush.identity.auth import Identity
from fieldpush.node import Node
from fieldpush.sync.engine import actor_of
from fieldpush_client.protocol import ErrorCode

__all__ = ["download_routes"]

_NOT_FOUND = {"error": {"code": ErrorCode.NOT_FOUND.value, "message": "no such file"}}
_ERROR_HEADERS = {"Cache-Control": "no-store"}


class _File:
    """What a download serves: the stored file, its type and name, and why
    the caller may have it."""

    __slots__ = ("content_type", "name", "sha256", "via")

    def __init__(self, sha256: str, content_type: str, name: str, via: str) -> None:
        self.sha256, self.content_type, self.name, self.via = sha256, content_type, name, via


async def _find(node: Node, identity: Identity, file_id: str) -> _File | None:
    """The file ``file_id`` if the caller may read it (module docstring)."""
    if not is_upload_id(file_id):
        return None
    info = await node.uploads.find(file_id)
    if info is not None and info.sha256 is not None and info.owner == identity.user:
        return _File(
            info.sha256,
            info.content_type or "application/octet-stream",
            info.name or file_id,
            "uploader",
        )
    found = await node.sync.file_reference(actor_of(identity, "http"), file_id)
    if found is None:
        return None
    key, ref = found
    return _File(ref["sha256"], ref["content_type"], ref["name"], key.replace(":", "/", 1))


async def download(request: Request) -> Response:
    node, identity = caller(request)
    file_id = request.path_params["id"]
    target = f"file/{file_id}" if is_upload_id(file_id) else "file/?"

    def audit(outcome: str, **fields: object) -> None:
        node.audit.record(
            actor=identity.user, role=identity.role, action="file.read", target=target,
            outcome=outcome, fields={name: (None, value) for name, value in fields.items()},
        )  # fmt: skip

    node.audit.require()
    found = await _find(node, identity, file_id)
    size = await node.files.size(found.sha256) if found is not None else None
    if found is None or size is None:
        audit("refused:not_found")
        return JSONResponse(_NOT_FOUND, status_code=404, headers=_ERROR_HEADERS)
    etag = f'"{found.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private", "Accept-Ranges": "bytes"}
    condition = request.headers.get("if-none-match")
    if condition is not None and matches(condition, etag):
        audit("ok:not_modified", sha256=found.sha256, via=found.via)
        return Response(status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # the file changed for the client: send it whole
    try:
        span = byte_range(wanted, size)
    except Unsatisfiable as exc:
        audit("refused:range", sha256=found.sha256, via=found.via)
        body = {"error": {"code": ErrorCode.BAD_REQUEST.value, "message": str(exc)}}
        return JSONResponse(
            body,
            status_code=416,
            headers={**_ERROR_HEADERS, "Content-Range": f"bytes */{size}"},
        )
    first, last = span if span is not None else (0, size - 1)
    length = last - first + 1 if size else 0
    headers.update(
        {
            "Content-Length": str(length),
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.name, safe='')}",
        }
    )
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    audit(
        "ok", sha256=found.sha256, bytes=length, via=found.via,
        range=None if span is None else f"{first}-{last}",
    )  # fmt: skip
    chunks: AsyncIterator[bytes] = node.files.read(found.sha256, first, first + length)
    return StreamingResponse(
        chunks,
        status_code=206 if span is not None else 200,
        headers=headers,
        media_type=found.content_type,
    )


download_routes = [Route("/v1/files/{id}", download, methods=["GET"])]
