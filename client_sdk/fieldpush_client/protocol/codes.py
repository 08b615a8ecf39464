"""Close codes, error codes and priorities: the words both sides agree on.

Close codes (:class:`CloseCode`, docs/protocol.md section 1) fall into two groups,
and :func:`should_reconnect` is the one place that says which is which:

================  ========================================================
do not reconnect  4001 unauthorized, 4003 forbidden, 1007 undecodable frame,
                  1009 frame too large: only a new token or a fixed client
                  helps (:data:`FATAL_CLOSE_CODES`)
reconnect         everything else, a dropped TCP connection (no code) and
                  codes this version does not know included: 1000, 1001,
                  1011, 1012 (resume anywhere), 4008 (resume), 4029 (later)
================  ========================================================

The v1 codes predate a range convention, so the groups are listed, not derived
from the number; a new code goes into one group or the other here, once.

:class:`ErrorCode` is the ``code`` of an ``error`` message and of an HTTP
error body; :class:`Priority` the priority of an event, most urgent first.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

__all__ = ["FATAL_CLOSE_CODES", "CloseCode", "ErrorCode", "Priority", "should_reconnect"]


class CloseCode(IntEnum):
    """WebSocket close codes. 4xxx are fieldpush's own (docs/protocol.md section 1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    TOO_SLOW = 4008
    RATE_LIMITED = 4029


#: Close codes after which reconnecting cannot help without a change on the
#: client side (a new token, a fixed client): the SDK stops and raises.
FATAL_CLOSE_CODES: Final = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG}
)


def should_reconnect(code: int | None) -> bool:
    """Whether a client should reconnect (with backoff) after this close code;
    ``None`` (no close frame: the connection dropped) is always worth a retry."""
    return code not in FATAL_CLOSE_CODES


class ErrorCode(StrEnum):
    """``code`` of an ``error`` message or of an HTTP error body."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    #: The token is valid but its user is disabled (HTTP 403; socket close 4003).
    ACCOUNT_DISABLED = "account_disabled"
    #: The token was revoked, by its ``jti`` or as issued too early (HTTP 403; close 4003).
    TOKEN_REVOKED = "token_revoked"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"
    RESYNC = "resync"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class Priority(StrEnum):
    """Event priorities, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
