"""A tus 1.0.0 client for ``/v1/files/`` (docs/attachments.md, "The SDK").

The pure part (no I/O): the headers of each request (:func:`creation_headers`,
:func:`patch_headers`) and the strict reading of the server's answers
(:func:`read_offset`, :func:`read_location`). A server's answer is believed
only if it is well-formed and possible: an ``Upload-Offset`` that is not
plain decimal digits, lies outside ``0..length``, or does not match the bytes
just sent raises :class:`~fieldpush_client.errors.FileTransferError` (``reason``
``"protocol"``), never a guess.

:class:`TusSession` makes the requests over one ``httpx.AsyncClient``:
create, find the offset (``HEAD``), send one chunk (``PATCH`` with
``Upload-Checksum: sha256``), terminate, and download (``GET`` with
``Range``). Each raises :class:`~fieldpush_client.errors.FileTransferError` on a
refusal, classified by what a retry can do (:attr:`FileTransferError.retryable`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

import httpx

from fieldpush_client.errors import FileTransferError

__all__ = [
    "OFFSET_CONTENT_TYPE",
    "TUS_VERSION",
    "TusSession",
    "creation_headers",
    "patch_headers",
    "read_location",
    "read_offset",
]

TUS_VERSION: Final = "1.0.0"
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"
_DIGITS: Final = re.compile(r"[0-9]{1,18}")
_UPLOAD_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A refusal that a later attempt may not see: the server busy, another
#: writer of the upload (423), an offset that moved (409: ask HEAD again).
_RETRYABLE_STATUS: Final = frozenset({408, 409, 423, 425, 429, 500, 502, 503, 504})
#: What each final refusal means, for the job's error.
_REASONS: Final = {
    401: "unauthorized",
    403: "forbidden",
    404: "gone",
    410: "gone",
    413: "too_large",
    415: "protocol",
    460: "checksum",
}


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def creation_headers(length: int, name: str | None, content_type: str | None) -> dict[str, str]:
    """The headers of ``POST /v1/files/`` for ``length`` bytes, with
    ``Upload-Metadata`` ``filename`` and ``filetype`` when given."""
    if length < 0:
        raise ValueError("an upload's length cannot be negative")
    headers = {"Tus-Resumable": TUS_VERSION, "Upload-Length": str(length)}
    pairs = [("filename", name), ("filetype", content_type)]
    metadata = ",".join(f"{key} {_b64(value)}" for key, value in pairs if value)
    if metadata:
        headers["Upload-Metadata"] = metadata
    return headers


def patch_headers(offset: int, chunk: bytes) -> dict[str, str]:
    """The headers of a ``PATCH`` carrying ``chunk`` at ``offset``, with its sha256."""
    digest = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Content-Type": OFFSET_CONTENT_TYPE,
        "Upload-Checksum": f"sha256 {digest}",
    }


def read_offset(headers: httpx.Headers, length: int) -> int:
    """The answer's ``Upload-Offset``: plain decimal digits within ``0..length``;
    :class:`FileTransferError` (``"protocol"``) otherwise."""
    raw = headers.get("upload-offset")
    if raw is None or not _DIGITS.fullmatch(raw):
        raise FileTransferError(
            f"the server sent no usable Upload-Offset ({raw!r})", reason="protocol"
        )
    offset = int(raw)
    if offset > length:
        raise FileTransferError(
            f"the server says {offset} bytes arrived of an upload of {length}", reason="protocol"
        )
    return offset


def read_location(headers: httpx.Headers, base_url: str) -> str:
    """The upload id in a creation's ``Location`` (``/v1/files/<id>``,
    relative or absolute on the same server); :class:`FileTransferError` otherwise."""
    location = headers.get("location") or ""
    parts = urlsplit(location)
    base = urlsplit(base_url)
    if parts.netloc and (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
        raise FileTransferError(
            f"the upload's Location points elsewhere: {location!r}", reason="protocol"
        )
    prefix, _, upload_id = parts.path.rpartition("/")
    if not prefix.endswith("/v1/files") or not _UPLOAD_ID.fullmatch(upload_id):
        raise FileTransferError(
            f"the server sent no usable Location ({location!r})", reason="protocol"
        )
    return upload_id


def _refusal(reply: httpx.Response, what: str) -> FileTransferError:
    status = reply.status_code
    try:
        payload = reply.json()
        message = str(payload["error"]["message"])
    except (ValueError, KeyError, TypeError, RecursionError):
        message = reply.reason_phrase
    retryable = status in _RETRYABLE_STATUS
    reason = "server" if retryable else _REASONS.get(status, "refused")
    return FileTransferError(
        f"{what}: HTTP {status}: {message}", reason=reason, status=status, retryable=retryable
    )


class TusSession:
    """The tus requests of one user to one node (see the module). ``token``
    gives a current bearer token for each request."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        token: Callable[[], Awaitable[str]],
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token

    async def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._token()}", **extra}

    def _url(self, upload_id: str = "") -> str:
        return f"{self._base}/v1/files/{upload_id}"

    async def create(self, length: int, name: str | None, content_type: str | None) -> str:
        """A new upload of ``length`` bytes; its id."""
        headers = await self._headers(creation_headers(length, name, content_type))
        reply = await self._http.post(self._url(), headers=headers)
        if reply.status_code != 201:
            raise _refusal(reply, "creating the upload")
        upload_id = read_location(reply.headers, self._base)
        if read_offset(reply.headers, length) != 0:
            raise FileTransferError("a new upload that already holds bytes", reason="protocol")
        return upload_id

    async def offset(self, upload_id: str, length: int) -> int:
        """How many bytes of the upload the server holds (``HEAD``)."""
        headers = await self._headers({"Tus-Resumable": TUS_VERSION})
        reply = await self._http.head(self._url(upload_id), headers=headers)
        if reply.status_code != 200:
            raise _refusal(reply, "asking for the upload's offset")
        told = reply.headers.get("upload-length")
        if told is not None and told != str(length):
            raise FileTransferError(
                f"the server holds an upload of {told} bytes, not {length}", reason="protocol"
            )
        return read_offset(reply.headers, length)

    async def patch(self, upload_id: str, offset: int, chunk: bytes, length: int) -> int:
        """Send ``chunk`` at ``offset``; the new offset, which must be ``offset + len(chunk)``."""
        headers = await self._headers(patch_headers(offset, chunk))
        reply = await self._http.patch(self._url(upload_id), headers=headers, content=chunk)
        if reply.status_code != 204:
            raise _refusal(reply, f"sending bytes {offset}..{offset + len(chunk)}")
        new = read_offset(reply.headers, length)
        if new != offset + len(chunk):
            raise FileTransferError(
                f"the server took bytes {offset}..{new} of a chunk ending at {offset + len(chunk)}",
                reason="protocol",
            )
        return new

    async def terminate(self, upload_id: str) -> None:
        """Delete the upload (``DELETE``); an upload already gone is not an error."""
        headers = await self._headers({"Tus-Resumable": TUS_VERSION})
        reply = await self._http.delete(self._url(upload_id), headers=headers)
        if reply.status_code not in (204, 404, 410):
            raise _refusal(reply, "terminating the upload")

    async def download(
        self, upload_id: str, start: int, size: int, sink: Callable[[bytes], None]
    ) -> None:
        """Hand the file's bytes from ``start`` to ``sink`` piece by piece
        (``GET`` with ``Range`` when ``start`` > 0), never more than ``size``
        in all: a piece that would pass it raises before ``sink`` sees it."""
        extra = {"Range": f"bytes={start}-"} if start else {}
        headers = await self._headers(extra)
        async with self._http.stream("GET", self._url(upload_id), headers=headers) as reply:
            expected = 206 if start else 200
            if reply.status_code != expected:
                await reply.aread()
                raise _refusal(reply, "downloading the file")
            if start and not reply.headers.get("content-range", "").startswith(f"bytes {start}-"):
                raise FileTransferError("the server answered another range", reason="protocol")
            got = start
            async for piece in reply.aiter_bytes():
                if got + len(piece) > size:
                    raise FileTransferError(
                        f"the server sends more than the file's {size} bytes", reason="integrity"
                    )
                got += len(piece)
                sink(piece)
