"""The two ways a peer's frame can be wrong.

ValueError
├── DecodeError      the frame is not one message of the connection's codec (close 1007)
└── ProtocolError    a decodable message that is not valid (``error`` ``bad_request``)

Both stay :class:`ValueError` subclasses, so ``except ValueError`` keeps catching them.
"""

from __future__ import annotations

__all__ = ["DecodeError", "ProtocolError"]


class DecodeError(ValueError):
    """A frame that is not one message of the connection's codec (close 1007)."""


class ProtocolError(ValueError):
    """A decodable message that is not valid (``error`` code ``bad_request``).

    ``request_id`` is the message's ``id`` when it had a valid one, so that the
    error can echo it.
    """

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
