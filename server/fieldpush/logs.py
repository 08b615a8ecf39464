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
"""

from __future__ import annotations

import json
import logging
from typing import Final

__all__ = ["LOG_FORMAT", "EscapingFormatter", "escape_controls", "shown"]

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
    the message (with its ``%``-arguments) escaped, tracebacks indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return _continuation(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return _continuation(super().formatStack(stack_info))


def _continuation(text: str) -> str:
    return "\n".join("| " + escape_controls(line) for line in text.split("\n"))
