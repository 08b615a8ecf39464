"""Login refusals in the audit trail, aggregated so a flood cannot fill it.

Every refused token (HTTP 401/403 on an authenticated route, a refused
``hello``) is counted per (source address, reason) by
:meth:`LoginRefusals.note`; every ``audit_refusals_s`` seconds (and at
shutdown) each pair counted is one entry: action ``login.refused``, target
``source/<address>``, outcome ``refused:<reason>``, ``fields: {"count":
[null, n], "interval_s": [null, s]}``. So a million bad tokens from one
address in a minute are one entry, and a node writes at most
:data:`MAX_SOURCES` + 1 such entries per interval and reason: beyond that
many distinct pairs in one interval, the rest are counted under the source
``other`` (counted, never dropped).

Reasons: ``missing_token``, ``invalid_token`` (malformed, expired, wrongly
signed: the message says which, the trail does not, so that what a caller
sent never reaches it), ``account_disabled``, ``token_revoked``.
"""

from __future__ import annotations

import asyncio
from typing import Final

from fieldpush.errors import AccessRevoked, AuthError
from fieldpush.tasks import stop
from fieldpush.trail.recorder import AuditRecorder

__all__ = ["MAX_SOURCES", "LoginRefusals", "reason_of"]

#: Distinct (source, reason) pairs kept per interval; more go to ``other``.
MAX_SOURCES: Final = 1000


def reason_of(error: AuthError | None) -> str:
    """The refusal's reason (module docstring); None: no token was sent."""
    if error is None:
        return "missing_token"
    if isinstance(error, AccessRevoked):
        return str(error.reason)
    return "invalid_token"


class LoginRefusals:
    """See the module docstring."""

    def __init__(self, audit: AuditRecorder, *, interval_s: float) -> None:
        self._audit = audit
        self._interval_s = interval_s
        self._counts: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._every_interval(), name="audit-login-refusals"
        )

    def note(self, source: str, reason: str) -> None:
        """One refusal from ``source`` (an address, without the port) for ``reason``."""
        key = (source or "unknown", reason)
        if key not in self._counts and len(self._counts) >= MAX_SOURCES:
            key = ("other", reason)
        self._counts[key] = self._counts.get(key, 0) + 1

    def flush(self) -> None:
        """Record the counts so far, one entry per (source, reason)."""
        counts, self._counts = self._counts, {}
        for (source, reason), count in sorted(counts.items()):
            self._audit.record(
                actor="", action="login.refused", target=f"source/{source}",
                outcome=f"refused:{reason}",
                fields={"count": (None, count), "interval_s": (None, self._interval_s)},
            )  # fmt: skip

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.flush()

    async def close(self) -> None:
        """Stop, recording what was counted."""
        await stop(self._task)
        self._task = None
        self.flush()
