"""The server's exception tree.

FieldpushError
├── ConfigError            settings or config files are invalid (the server refuses to start)
├── AuthError              a token is missing, malformed, expired or wrongly signed
├── BackendUnavailable     the shared state (Redis) cannot be reached; nothing was stored
└── IdempotencyConflict    an idempotency key was reused with a different body
"""

from __future__ import annotations


class FieldpushError(Exception):
    """Root of every error the server raises on purpose."""


class ConfigError(FieldpushError):
    """Settings or configuration files are invalid; the message says where and why."""


class AuthError(FieldpushError):
    """A token is missing, malformed, expired or wrongly signed.

    The message is safe to show to the client and to log: it never contains the token.
    """


class BackendUnavailable(FieldpushError):
    """The backend cannot be reached. Raised instead of acknowledging anything not stored."""


class IdempotencyConflict(FieldpushError):
    """The same publisher reused an idempotency key with a different request body."""
