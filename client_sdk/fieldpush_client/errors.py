"""The SDK's exceptions.

FieldpushClientError
├── ConnectionClosedFatal     the server closed with a code that retrying cannot fix
│   └── Unauthorized          4001/4003: the token is missing, invalid, expired or revoked
│       └── AccessRevoked     4003: the account is disabled or the token revoked
├── RequestError              the server answered a request with ``error`` (``.code``)
├── RequestTimeout            no answer to a request in time
├── NotConnected              a request needs a connection and there is none
└── PublishError              an HTTP call was refused (``.status``, ``.code``)
"""

from __future__ import annotations

__all__ = [
    "AccessRevoked",
    "ConnectionClosedFatal",
    "FieldpushClientError",
    "NotConnected",
    "PublishError",
    "RequestError",
    "RequestTimeout",
    "Unauthorized",
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
