"""The server side of the WebSocket opening handshake (RFC 6455 section 4.2). Pure.

uvicorn has already parsed the upgrade request with httptools and hands the
gateway the request re-serialised as ``METHOD target HTTP/1.1`` plus one
``name: value`` line per header. Parsing that again with a general HTTP parser
cost a quarter of a handshake's CPU (measured with py-spy), so this module
reads just the fields a WebSocket handshake needs, refuses a browser page
whose ``Origin`` is not allowed (cross-site WebSocket hijacking), and writes
the 101 response from a template. Frames after the handshake are parsed by
the ``websockets`` Sans-I/O protocol.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from fieldpush.errors import FieldpushError
from fieldpush_client.protocol import SUBPROTOCOLS

__all__ = ["HandshakeError", "Upgrade", "parse_upgrade", "reject", "switching_protocols"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(FieldpushError):
    """The upgrade request cannot be accepted: answer ``status`` with ``text``."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid upgrade request: what the gateway needs of it."""

    path: str
    key: bytes
    subprotocol: str | None
    authorization: str | None


def parse_upgrade(raw: bytes, *, path: str, origins: Collection[str]) -> Upgrade:
    """Validate an upgrade request for ``path``; raise :class:`HandshakeError`.

    ``origins`` are the browser origins allowed to open the socket: a request
    whose ``Origin`` header is not one of them (byte for byte, as browsers
    serialise it) and not a page of this node itself (:func:`same_origin`) is
    refused with 403, after the checks of the request's form; a request without
    ``Origin`` (not a browser) passes this check."""
    head, _, _ = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target = rest.rpartition(" ")[0]
    headers: dict[str, str] = {}
    offered: list[str] = []
    for line in lines:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "sec-websocket-protocol":
            offered.extend(p.strip() for p in value.split(",") if p.strip())
        elif name == "authorization" and name in headers:
            # One rule for every route (docs/protocol.md 2.1): never pick one of two.
            raise HandshakeError(
                401, "more than one Authorization header", (("WWW-Authenticate", "Bearer"),)
            )
        elif name in headers:
            headers[name] += ", " + value
        else:
            headers[name] = value
    request_path = target.partition("?")[0]
    if request_path != path:
        raise HandshakeError(404, f"no WebSocket endpoint at {request_path}; use {path}")
    if method != "GET":
        raise HandshakeError(405, "a WebSocket upgrade must be a GET request")
    if "upgrade" not in (
        token.strip().lower() for token in headers.get("connection", "").split(",")
    ):
        raise HandshakeError(400, "missing 'Connection: Upgrade'")
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(400, "missing 'Upgrade: websocket'")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(
            426, "only WebSocket version 13 is supported", (("Sec-WebSocket-Version", "13"),)
        )
    key = headers.get("sec-websocket-key", "").encode()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from None
    subprotocol = next((p for p in offered if p in SUBPROTOCOLS), None)
    if offered and subprotocol is None:
        raise HandshakeError(
            400, f"unsupported subprotocol; offer one of {', '.join(SUBPROTOCOLS)}"
        )
    origin = headers.get("origin")
    if origin is not None and origin not in origins and not same_origin(origin, headers):
        raise HandshakeError(403, f"origin {origin} may not open this WebSocket")
    return Upgrade(request_path, key, subprotocol, headers.get("authorization"))


def same_origin(origin: str, headers: Mapping[str, str]) -> bool:
    """Whether ``origin`` is a page of the host the request was sent to: its
    ``host[:port]`` is the request's ``Host`` (compared case-insensitively),
    its scheme ``http`` or ``https`` (a TLS proxy in front changes the scheme
    the node sees). The node's own console at ``/console`` needs no setting.

    A page of another site never matches: a browser sends the page's origin
    and the host it connects to. A rebound DNS name could match, but gains
    nothing a script could not do itself: no credential is ambient (the token
    travels in ``hello`` or an ``Authorization`` header a page cannot make a
    browser add) and a TLS certificate does not cover the rebound name."""
    scheme, sep, host = origin.partition("://")
    target = headers.get("host", "")
    return (
        bool(sep)
        and scheme in ("http", "https")
        and bool(host)
        and "," not in target
        and host.lower() == target.lower()
    )


def switching_protocols(upgrade: Upgrade) -> bytes:
    """The 101 response that completes the handshake."""
    accept = base64.b64encode(hashlib.sha1(upgrade.key + _GUID).digest())
    protocol = (
        b"Sec-WebSocket-Protocol: %s\r\n" % upgrade.subprotocol.encode()
        if upgrade.subprotocol
        else b""
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + protocol + b"\r\n"
    )


def reject(error: HandshakeError) -> bytes:
    """A plain-text HTTP error response that closes the connection."""
    body = (error.text + "\n").encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in error.headers)
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body
