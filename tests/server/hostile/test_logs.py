"""Log lines that input cannot forge (issue 11, defect 6), through the real
log output of ``fieldpush serve`` and through the formatter itself."""

from __future__ import annotations

import json
import logging
import re

from websockets.asyncio.client import connect

from fieldpush.logs import LOG_FORMAT, EscapingFormatter
from tests.support.cli import ServeProcess
from tests.support.phones import Phone
from tests.support.timing import eventually

FORGED = "2099-01-01 00:00:00,000 CRITICAL fieldpush: forged"
#: The start of a line the formatter writes: its timestamp.
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


async def test_a_device_name_cannot_write_a_log_line() -> None:
    """``hello.device = "pixel\\n2099-01-01 CRITICAL ..."`` with an invalid token:
    the refusal is logged on one line, the newline shown as ``\\x0a``."""
    server = ServeProcess("--port", "0").start()
    try:
        for device in (f"pixel\n{FORGED}", f"pixel\r{FORGED}", f"pixel\u2028{FORGED}"):
            async with connect(server.ws_url) as ws:
                await ws.send(json.dumps({"type": "hello", "token": "x.y.z", "device": device}))
                assert await Phone(ws, False).closed_with() == 4001
        lines = await eventually(
            lambda: [line for line in server.lines if "device pixel" in line],
            until=lambda found: len(found) == 3,
            message="the three refusals are logged",
        )
    finally:
        assert server.stop() == 0, server.output
    assert not any(line.startswith("2099") for line in server.lines), server.output
    records = [line for line in server.lines if "listening on" not in line]
    assert all(RECORD_START.match(line) for line in records), server.output
    escapes = ("\\x0a", "\\x0d", "\\u2028")
    assert [escape + FORGED in line for escape, line in zip(escapes, lines, strict=True)] == [
        True
    ] * 3


def test_arguments_messages_and_tracebacks_are_escaped() -> None:
    formatter = EscapingFormatter(LOG_FORMAT)
    record = logging.LogRecord(
        "fieldpush.x", logging.INFO, __file__, 1, "a\n%s", ("b\x1b[2J",), None
    )
    assert formatter.format(record).endswith("fieldpush.x: a\\x0ab\\x1b[2J")
    try:
        raise ValueError(f"bad\n{FORGED}")
    except ValueError as exc:
        record = logging.LogRecord(
            "fieldpush.x", logging.ERROR, __file__, 1, "failed", (), (ValueError, exc, None)
        )
    text = formatter.format(record)
    first, *rest = text.split("\n")
    assert first.endswith("fieldpush.x: failed") and rest
    assert all(line.startswith("| ") for line in rest), text
