"""Signing and verifying fieldpush's outgoing webhook (docs/sync.md, "Webhook").

Every POST of the change-feed webhook carries::

    Fieldpush-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC is keyed with the shared ``webhook_secret`` and taken over the
bytes ``<t>.`` followed by the raw request body. The timestamp is signed with
the body, so a captured delivery cannot be replayed later than the receiver's
tolerance; within it, the entries' cursors de-duplicate. The node signs every
attempt anew (a retry carries a fresh ``t``, the same body).

:func:`verify` is what a receiver calls on the raw body, before parsing it:
it raises :class:`~fieldpush_client.errors.WebhookSignatureError` unless the
header is well formed, its timestamp is within ``tolerance_s`` of now (either
side) and one of its ``v1`` signatures matches (compared in constant time).
It never echoes the header's content in its message. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fieldpush_client.errors import WebhookSignatureError

__all__ = ["SIGNATURE_HEADER", "TOLERANCE_S", "sign", "verify"]

#: The header's name (HTTP header names are case-insensitive).
SIGNATURE_HEADER = "Fieldpush-Signature"
#: The replay window a receiver should enforce (seconds, either side of now).
TOLERANCE_S = 300
#: A header longer than this is malformed (one ``t`` and a few ``v1`` fit easily).
MAX_HEADER_LENGTH = 1024
_MAX_SIGNATURES = 8
_HEX = frozenset("0123456789abcdef")


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(body: bytes, secret: str | bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def _malformed(what: str) -> WebhookSignatureError:
    return WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header: {what}", reason="malformed")


def _parse(header: object) -> tuple[int, list[str]]:
    """``(t, [v1 signatures])``; WebhookSignatureError ``malformed`` otherwise.
    Unknown schemes (``v0=``, a future ``v2=``) are ignored."""
    if not isinstance(header, str):
        raise _malformed("not a string")
    if not header or len(header) > MAX_HEADER_LENGTH:
        raise _malformed(f"empty or longer than {MAX_HEADER_LENGTH} characters")
    if not header.isascii() or not header.isprintable():
        raise _malformed("control or non-ASCII characters")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise _malformed("expected name=value pairs separated by commas")
        if name == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise _malformed("t must appear once, as unix seconds")
            timestamp = int(value)
        elif name == "v1":
            if len(value) != 64 or not set(value) <= _HEX:
                raise _malformed("v1 must be 64 lowercase hex digits")
            signatures.append(value)
    if timestamp is None or not signatures or len(signatures) > _MAX_SIGNATURES:
        raise _malformed(f"need t and 1 to {_MAX_SIGNATURES} v1 signatures")
    return timestamp, signatures


def verify(
    body: bytes,
    header: object,
    secret: str | bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a delivery; return its signed timestamp. ``body`` is the raw
    request body (bytes, before any JSON parsing), ``header`` the value of
    ``Fieldpush-Signature`` (None or anything not a string: malformed),
    ``now`` the receiver's wall clock (default ``time.time()``). Raises
    :class:`~fieldpush_client.errors.WebhookSignatureError`."""
    if not isinstance(body, bytes | bytearray):
        raise TypeError("verify() needs the raw body as bytes")
    if not _key(secret):
        raise ValueError("verify() needs the shared secret")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookSignatureError("the delivery's timestamp is too old", reason="stale")
    if timestamp > current + tolerance_s:
        raise WebhookSignatureError("the delivery's timestamp is in the future", reason="future")
    expected = _digest(bytes(body), secret, timestamp)
    # Compare against every candidate (no early exit) in constant time each.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureError("no signature matches the body", reason="mismatch")
    return timestamp
