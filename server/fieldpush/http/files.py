"""tus 1.0.0 at ``/v1/files/`` (docs/attachments.md, docs/protocol.md 2.11).

``OPTIONS /v1/files/`` (discovery), ``POST /v1/files/`` (creation, with an
upload in the body if it has one), ``HEAD``, ``PATCH`` and ``DELETE
/v1/files/{id}``. Every call needs the bearer token; an upload is its
uploader's alone (anyone else gets 404, the answer for no upload at all).
Every answer carries ``Tus-Resumable: 1.0.0``; errors are the API's JSON body
(none for HEAD). The bytes are streamed to :class:`~fieldpush.files.uploads.Uploads`
as they arrive, never held whole.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.files.headers import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    TusError,
    check_version,
    parse_checksum,
    parse_metadata,
    parse_number,
)
from fieldpush.files.info import UploadInfo
from fieldpush.files.uploads import Interrupted
from fieldpush.http.toolkit import HTTPError, caller
from fieldpush.node import Node
from fieldpush_client.protocol import ErrorCode

__all__ = ["files_routes"]

_CODES = {
    400: ErrorCode.BAD_REQUEST,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    410: ErrorCode.NOT_FOUND,
    412: ErrorCode.BAD_REQUEST,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.BAD_REQUEST,
    423: ErrorCode.CONFLICT,
    460: ErrorCode.INVALID,
}


def _error(request: Request, exc: HTTPError | TusError) -> Response:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if isinstance(exc, HTTPError):
        status, code, message = exc.status, exc.code, exc.message
        headers.update(exc.headers)
    else:
        status, code, message = exc.status, _CODES[exc.status], exc.message
    if status == 412:
        headers["Tus-Version"] = TUS_VERSION
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = {"error": {"code": code.value, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _tus(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler``, its HTTP and tus errors answered with the tus headers."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except (HTTPError, TusError) as exc:
            return _error(request, exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    return endpoint


def _state(info: UploadInfo) -> dict[str, str]:
    """The headers that describe an upload's state."""
    headers = {"Upload-Offset": str(info.offset), "Cache-Control": "no-store"}
    if not info.complete:
        headers["Upload-Expires"] = formatdate(info.expires, usegmt=True)
    return headers


def _metadata(info: UploadInfo) -> str:
    pairs = [("filename", info.name), ("filetype", info.content_type)]
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs if value
    )


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return None if value is None else parse_number("Content-Length", value)


async def _chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body as it arrives; :class:`Interrupted` if the client goes."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise Interrupted("the client went away mid-chunk") from None


async def _append(node: Node, request: Request, info: UploadInfo, offset: int) -> UploadInfo:
    """The request's body appended at ``offset``; the upload afterwards."""
    try:
        return await node.uploads.append(
            info,
            offset,
            _chunks(request),
            parse_checksum(request.headers.get("upload-checksum")),
            _content_length(request),
        )
    except Interrupted:
        raise TusError(400, "the client went away mid-chunk") from None  # nobody reads it


def _require_offset_stream(request: Request) -> None:
    if request.headers.get("content-type") != OFFSET_CONTENT_TYPE:
        raise TusError(415, f"Content-Type must be {OFFSET_CONTENT_TYPE}")


@_tus
async def options(request: Request) -> Response:
    node, _ = caller(request)
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(node.settings.files_max_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@_tus
async def create(request: Request) -> Response:
    node, identity = caller(request)
    check_version(request.headers.get("tus-resumable"))
    if "upload-defer-length" in request.headers:
        raise TusError(400, "Upload-Defer-Length is not supported; send Upload-Length")
    length = parse_number("Upload-Length", request.headers.get("upload-length"))
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    declared = _content_length(request)
    with_upload = declared != 0 and (declared is not None or "transfer-encoding" in request.headers)
    if with_upload:
        _require_offset_stream(request)
        if declared is not None and declared > length:
            raise TusError(413, f"the body is {declared} bytes; Upload-Length is {length}")
    info = await node.uploads.create(identity.user, length, metadata)
    if with_upload and not info.complete:
        info = await _append(node, request, info, 0)
    headers = {"Location": f"/v1/files/{info.id}", **_state(info)}
    return Response(status_code=201, headers=headers)


@_tus
async def head(request: Request) -> Response:
    node, identity = caller(request)
    check_version(request.headers.get("tus-resumable"))
    info = await node.uploads.get(request.path_params["id"], identity.user)
    headers = {"Upload-Length": str(info.length), **_state(info)}
    if metadata := _metadata(info):
        headers["Upload-Metadata"] = metadata
    return Response(status_code=200, headers=headers)


@_tus
async def patch(request: Request) -> Response:
    node, identity = caller(request)
    check_version(request.headers.get("tus-resumable"))
    info = await node.uploads.get(request.path_params["id"], identity.user)
    _require_offset_stream(request)
    offset = parse_number("Upload-Offset", request.headers.get("upload-offset"))
    info = await _append(node, request, info, offset)
    return Response(status_code=204, headers=_state(info))


@_tus
async def delete(request: Request) -> Response:
    node, identity = caller(request)
    check_version(request.headers.get("tus-resumable"))
    info = await node.uploads.get(request.path_params["id"], identity.user)
    await node.uploads.terminate(info)
    return Response(status_code=204)


files_routes = [
    Route("/v1/files/", options, methods=["OPTIONS"]),
    Route("/v1/files/", create, methods=["POST"]),
    Route("/v1/files/{id}", head, methods=["HEAD"]),
    Route("/v1/files/{id}", patch, methods=["PATCH"]),
    Route("/v1/files/{id}", delete, methods=["DELETE"]),
]
