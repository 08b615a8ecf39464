"""The SDK's exceptions.

FieldpushClientError
├── ConnectionClosedFatal     the server closed with a code that retrying cannot fix
│   └── Unauthorized          4001/4003: the token is missing, invalid, expired or revoked
│       └── AccessRevoked     4003: the account is disabled or the token revoked
├── RequestError              the server answered a request with ``error`` (``.code``)
├── RequestTimeout            no answer to a request in time
├── NotConnected              a request needs a connection and there is none
├── PublishError              an HTTP call was refused (``.status``, ``.code``)
├── FileTransferError         an upload or download of a file failed (``.reason``)
├── StoreError                the local store (``SyncStore``) cannot be used as it is
│   ├── StoreKeyError         the key is malformed, its provider failed, or it is not
│   │                         this store's key (``.reason``)
│   └── StoreIntegrityError   a sealed value does not authenticate: changed, moved, cut short
└── WebhookSignatureError     a webhook delivery's ``Fieldpush-Signature`` does not verify
                              (``.reason``: malformed, stale, future, mismatch)
"""

from __future__ import annotations

__all__ = [
    "AccessRevoked",
    "ConnectionClosedFatal",
    "FieldpushClientError",
    "FileTransferError",
    "NotConnected",
    "PublishError",
    "RequestError",
    "RequestTimeout",
    "StoreError",
    "StoreIntegrityError",
    "StoreKeyError",
    "Unauthorized",
    "WebhookSignatureError",
]


class FieldpushClientError(Exception):
    """Root of every error the SDK raises."""


class ConnectionClosedFatal(FieldpushClientError):
    """The server closed the connection with ``code``; reconnecting would not help."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class Unauthorized(ConnectionClosedFatal):
    """The token was refused (close 4001 or 4003): get a new one."""


class AccessRevoked(Unauthorized):
    """Close 4003: the account is disabled, or the token revoked (``reason``
    says which). Do not reconnect until given a new token; an app may take it
    as the sign to lock the local data."""


class RequestError(FieldpushClientError):
    """The server answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RequestTimeout(FieldpushClientError):
    """No answer to a request within the request timeout."""


class NotConnected(FieldpushClientError):
    """The request needs a live connection."""


class PublishError(FieldpushClientError):
    """An HTTP call to the server was refused."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class FileTransferError(FieldpushClientError):
    """An upload or a download of a file failed. ``reason``: ``"protocol"``
    (the server's answer is malformed or impossible: a wrong offset, a
    garbage header), ``"integrity"`` (the bytes do not match their sha256 or
    size), ``"checksum"`` (460: a chunk arrived changed, again and again),
    ``"too_large"`` (413), ``"gone"`` (404/410: no such upload or file, or
    expired), ``"unauthorized"``, ``"forbidden"``, ``"refused"`` (another
    refusal), ``"server"`` (busy or failing: ``retryable``), ``"network"``
    (no answer: ``retryable``). ``status``: the HTTP status, if one came."""

    def __init__(
        self, message: str, *, reason: str, status: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.retryable = retryable


class StoreError(FieldpushClientError):
    """The local store cannot be used as it is (a format this SDK does not know,
    or one of the subclasses)."""


class StoreKeyError(StoreError):
    """The store key cannot open the store. ``reason``: ``"malformed"`` (not 32
    bytes: a programming or keystore error), ``"provider_failed"`` (the key
    provider raised; ``__cause__`` is its exception) or ``"wrong_key"`` (32
    bytes, but not the key this store was created with: nothing was read)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoreIntegrityError(StoreError):
    """A sealed value in the store does not authenticate: a byte of it was
    changed, it was moved to another row, or it was cut short. Nothing of it is
    returned; the store is not to be trusted (erase it and download again)."""


class WebhookSignatureError(FieldpushClientError):
    """A webhook delivery did not verify (:func:`fieldpush_client.webhook.verify`):
    ``reason`` is ``malformed`` (no usable header), ``stale`` or ``future``
    (its timestamp is outside the tolerance) or ``mismatch`` (no signature
    matches the body and the secret). Answer the delivery 400 and keep nothing."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
