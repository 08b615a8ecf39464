"""Log lines that input cannot forge: :class:`EscapingFormatter`.

Strings from clients (device names, token claims, channel names, reasons)
reach log lines through messages and their ``%``-arguments. A newline in one
would start a line of the attacker's choosing (``pixel\\n2099-01-01 CRITICAL
...``). The formatter escapes, once and centrally, every control character
(C0, DEL, C1), the Unicode line and paragraph separators and the bidi
overrides in the formatted message: ``\\n`` becomes the four characters
``\\x0a``. Tracebacks keep their lines, each continuation prefixed with
``| `` and escaped the same way, so no line of a log record can pass for a
record of its own. ``fieldpush serve`` installs it on the root handler, which
uvicorn's loggers propagate to.

With ``log_format = "json"`` the handler's formatter is :class:`JsonFormatter`
instead: one JSON object per line, the same characters escaped as JSON
``\\uXXXX`` escapes (the one table of unsafe characters serves both). Both
formats carry the HTTP request's id (:data:`REQUEST_ID`, set per request by
:mod:`fieldpush.http.requests`); JSON also a record's structured fields (``extra=``).
:class:`PublishLog` writes the per-publish line, sampled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Protocol

__all__ = [
    "LOG_FORMAT",
    "REQUEST_ID",
    "EscapingFormatter",
    "JsonFormatter",
    "PublishLog",
    "escape_controls",
    "formatter",
    "shown",
]

#: The id of the HTTP request being served (None outside one): in every log
#: line written while it is served, and in its ``X-Request-Id`` response header.
REQUEST_ID: ContextVar[str | None] = ContextVar("fieldpush_request_id", default=None)

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_UNSAFE: Final = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_ESCAPES: Final = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _UNSAFE
}
#: The same characters as JSON escapes (``json.dumps`` escapes C0 itself).
_JSON_ESCAPES: Final = {code: f"\\u{code:04x}" for code in _UNSAFE}
#: The attributes every ``LogRecord`` has: the others are a record's ``extra`` fields.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's: the message again, with terminal colours
}


def escape_controls(text: str) -> str:
    """``text`` with every character that could break or disguise a log line
    escaped (``\\x0a``, ``\\u2028``); other text unchanged."""
    return text.translate(_ESCAPES)


def shown(value: object, limit: int = 60) -> str:
    """``value`` for a message a user of the API reads: a string, number, bool
    or null as its JSON literal, controls escaped, a string cut after
    ``limit`` characters with ``...``; a list or object only by its kind and
    size, so no nested or huge structure is ever rendered."""
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    if isinstance(value, str):
        text = json.dumps(value[:limit], ensure_ascii=False)
        return escape_controls(text) + ("..." if len(value) > limit else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    if value is None or isinstance(value, int | float | bool):
        return json.dumps(value)
    return f"a {type(value).__name__}"


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose every output line is one record's:
    the message (with its ``%``-arguments) escaped, tracebacks indented; the
    request's id, when there is one, at the end as ``request_id=<id>``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        line = super().formatMessage(record)
        request_id = REQUEST_ID.get()
        return line if request_id is None else f"{line} request_id={request_id}"

    def formatException(self, ei: object) -> str:
        return _continuation(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return _continuation(super().formatStack(stack_info))


def _continuation(text: str) -> str:
    return "\n".join("| " + escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, with the stable keys ``ts``
    (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``msg``, then
    ``request_id`` during an HTTP request, the record's ``extra`` fields and
    ``exc`` (the traceback) when there is one. Every unsafe character of
    :func:`escape_controls` is a JSON escape, so a line never splits."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))
        return text.translate(_JSON_ESCAPES)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of the ``log_format`` setting: ``json`` or ``text``."""
    return JsonFormatter() if log_format == "json" else EscapingFormatter(LOG_FORMAT)


class PublishLog:
    """One INFO line per accepted publish (id, kind, priority, channel count,
    latency), at most ``max_per_s`` in each second (0: none). When a second
    dropped some, one line says how many, written when that second ends
    (``later`` schedules it: the running loop's ``call_later`` by default),
    whether or not another publish follows. The fields are also the record's
    ``extra`` (JSON keys)."""

    __slots__ = ("_clock", "_dropped", "_later", "_log", "_logged", "_max", "_report", "_window")

    def __init__(
        self,
        max_per_s: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], Cancellable] | None = None,
    ) -> None:
        self._log = logging.getLogger("fieldpush.publish")
        self._max = max_per_s
        self._clock = clock
        self._later = later or _call_later
        self._window = float("-inf")
        self._logged = self._dropped = 0
        self._report: Cancellable | None = None

    def published(
        self, event_id: str, kind: str, priority: str, channels: Sequence[str], latency_s: float
    ) -> None:
        if not self._max or not self._log.isEnabledFor(logging.INFO):
            return
        now = self._clock()
        if now - self._window >= 1.0:
            self._report_dropped()
            self._window, self._logged = now, 0
        if self._logged >= self._max:
            if not self._dropped:
                self._report = self._later(self._window + 1.0 - now, self._report_dropped)
            self._dropped += 1
            return
        self._logged += 1
        latency_ms = round(latency_s * 1000, 3)
        self._log.info(
            "published %s kind %s priority %s to %d channel(s) in %.3f ms",
            event_id, kind, priority, len(channels), latency_ms,
            extra={
                "event_id": event_id, "kind": kind, "priority": priority,
                "channels": len(channels), "latency_ms": latency_ms,
            },
        )  # fmt: skip

    def close(self) -> None:
        """Write the count of a second still open (at node stop)."""
        self._report_dropped()

    def _report_dropped(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self._dropped:
            self._log.info(
                "%d publish(es) not logged in the last second (log_publish_max_per_s=%d)",
                self._dropped, self._max, extra={"not_logged": self._dropped},
            )  # fmt: skip
            self._dropped = 0


class Cancellable(Protocol):
    """A scheduled call that can be called off (an ``asyncio.TimerHandle``)."""

    def cancel(self) -> None: ...


def _call_later(delay_s: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay_s, callback)
