"""The server's exception tree: every error the server raises on purpose.

Each class lives next to the code that raises it; this module holds the root
and the errors shared by several layers::

    FieldpushError                       fieldpush.errors
    ├── ConfigError                      settings or config files are invalid (no start)
    │   └── SchemaError                  fieldpush.sync.schema: schema.toml / mappings.toml
    ├── AuthError                        a token is missing, malformed, expired or wrongly signed
    │   └── AccessRevoked                the token is valid, but its user is disabled or it is
    │                                    revoked (``reason``: account_disabled, token_revoked)
    ├── BackendUnavailable               the shared state (Redis) cannot be reached; nothing stored
    ├── IdempotencyConflict              an idempotency key was reused with a different body
    ├── InvalidPosition                  a change-log position no store wrote (a forged cursor)
    ├── InvalidValue (also ValueError)   fieldpush.sync.schema: a field value the schema or a
    │                                    mapping refuses; the message names the field
    ├── SyncError                        fieldpush.sync.errors: a pull, push or CRM call the sync
    │                                    engine refuses, with the protocol's error code
    ├── HTTPError                        fieldpush.http.toolkit: ends an HTTP request with a status
    │                                    and the API's error body
    ├── ScimError                        fieldpush.http.scim.errors: ends a SCIM request with a
    │                                    status and the RFC 7644 §3.12 error body
    └── HandshakeError                   fieldpush.transport.handshake: a WebSocket upgrade refused

The wire codec's ``ProtocolError`` / ``DecodeError`` belong to the SDK
(:mod:`fieldpush_client.protocol`) and are ``ValueError``\\ s; the server catches
them where it parses what a client sent and answers with one of the above.
"""

from __future__ import annotations

__all__ = [
    "AccessRevoked",
    "AuthError",
    "BackendUnavailable",
    "ConfigError",
    "FieldpushError",
    "IdempotencyConflict",
    "InvalidPosition",
]


class FieldpushError(Exception):
    """Root of every error the server raises on purpose."""


class ConfigError(FieldpushError):
    """Settings or configuration files are invalid; the message says where and why."""


class AuthError(FieldpushError):
    """A token is missing, malformed, expired or wrongly signed.

    The message is safe to show to the client and to log: it never contains the token.
    """


class AccessRevoked(AuthError):
    """A valid token that may no longer be used: its user is disabled, or the
    token was revoked (by ``jti``, or issued before the user's
    ``tokens_valid_after``). Answered 403 over HTTP and close 4003 on a socket.

    ``reason`` is the protocol's error code: ``account_disabled`` or ``token_revoked``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BackendUnavailable(FieldpushError):
    """The backend cannot be reached. Raised instead of acknowledging anything not stored."""


class IdempotencyConflict(FieldpushError):
    """The same publisher reused an idempotency key with a different request body."""


class InvalidPosition(FieldpushError):
    """A change-log position that the record store did not write (it came from a
    client's cursor): nothing was read."""
