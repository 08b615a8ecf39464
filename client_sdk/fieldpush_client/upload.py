"""How the offline queue reaches the server, and what to do when it does not. Pure.

- :func:`check_answer`: a ``mutated`` answer is taken only if it answers
  exactly the mutations sent, each with a known status and well-formed parts;
  anything else (a garbled reply of a proxy, a hostile server) is a
  :class:`~fieldpush_client.protocol.ProtocolError` and nothing is settled.
- :func:`worth_retrying`: which failures of a flush a later attempt can fix
  (the server ``unavailable`` or ``rate_limited``, no connection, no answer
  in time, a transport error, a garbled answer, an HTTP 5xx/429) and which it
  cannot (a refusal of the request itself: fix the client or the token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import httpx

from fieldpush_client.errors import NotConnected, PublishError, RequestError, RequestTimeout
from fieldpush_client.protocol import ErrorCode, Mutated, Mutation, ProtocolError

__all__ = ["STATUSES", "check_answer", "worth_retrying"]

#: A mutation result's ``status``.
STATUSES: Final = frozenset({"applied", "conflict", "rejected"})
#: Failures on the way: no connection, no answer, a broken or garbled one.
_TRANSIENT: Final = (NotConnected, RequestTimeout, ProtocolError, httpx.HTTPError, OSError)
_RETRY_CODES: Final = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL})


def check_answer(sent: Sequence[Mutation], answer: Mutated) -> Mutated:
    """``answer`` if it answers every mutation of ``sent`` once and nothing
    else, each result well-formed; ProtocolError otherwise."""
    mids = sorted(mutation.mid for mutation in sent)
    results = answer.results
    if not isinstance(results, list) or sorted(_mid(result.mid) for result in results) != mids:
        raise ProtocolError("the answer to mutate does not answer the mutations sent")
    for result in results:
        if (
            result.status not in STATUSES
            or not isinstance(result.record, dict | None)
            or not isinstance(result.fields, dict | None)
            or not all(isinstance(v, str) for v in (result.fields or {}).values())
            or not isinstance(result.reason, str | None)
            or not isinstance(result.message, str | None)
        ):
            raise ProtocolError(f"a malformed mutation result for {result.mid!r}")
    return answer


def _mid(value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError("a mutation result without a mid")
    return value


def worth_retrying(exc: BaseException) -> bool:
    """Whether a flush that raised ``exc`` may succeed later unchanged."""
    if isinstance(exc, RequestError):
        return exc.code in _RETRY_CODES
    if isinstance(exc, PublishError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, _TRANSIENT)
