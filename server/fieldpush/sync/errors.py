"""The sync engine's refusal (its place in the tree: :mod:`fieldpush.errors`)."""

from __future__ import annotations

from fieldpush.errors import FieldpushError
from fieldpush_client.protocol import ErrorCode

__all__ = ["SyncError"]


class SyncError(FieldpushError):
    """A pull, push or CRM call the engine refuses: ``code`` is the protocol's
    error code, ``message`` is safe to show to the client."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
