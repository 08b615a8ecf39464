"""Logs for machines and people (issue 15 item 6): ``--log-format json``, one
sampled line per publish, the request id in every line of a request."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from fieldpush.logs import LOG_FORMAT, REQUEST_ID, EscapingFormatter, JsonFormatter, PublishLog
from tests.support.cli import ServeProcess
from tests.support.cluster import token
from tests.support.timing import eventually, scaled

FORGED = "pixel\n2099-01-01 CRITICAL fake\u2028\x85\x1b[31m\u202e"


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("fieldpush.test", logging.INFO, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_stable_keys_and_no_character_can_split_it() -> None:
    line = JsonFormatter().format(record("device %s", FORGED, event_id="e1", channels=2))
    assert "\n" not in line and "\u2028" not in line and "\x85" not in line and "\x1b" not in line
    assert "\u202e" not in line
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert list(entry)[:4] == ["ts", "level", "logger", "msg"]
    assert entry["ts"].endswith("Z") and entry["ts"][10] == "T"
    assert entry["msg"] == f"device {FORGED}"  # escaped on the wire, intact once parsed
    assert (entry["level"], entry["logger"]) == ("INFO", "fieldpush.test")
    assert (entry["event_id"], entry["channels"]) == ("e1", 2)


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), None)
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert len(line.splitlines()) == 1
    assert "ValueError" in json.loads(line)["exc"]


def test_both_formats_carry_the_request_id() -> None:
    token_ = REQUEST_ID.set("req-1")
    try:
        assert json.loads(JsonFormatter().format(record("x")))["request_id"] == "req-1"
        assert EscapingFormatter(LOG_FORMAT).format(record("x")).endswith(" request_id=req-1")
    finally:
        REQUEST_ID.reset(token_)
    assert "request_id" not in json.loads(JsonFormatter().format(record("x")))


def test_publish_lines_are_sampled_above_the_rate(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    scheduled: list[tuple[float, Callable[[], None]]] = []

    def later(delay_s: float, callback: Callable[[], None]) -> Cancelled:
        scheduled.append((delay_s, callback))
        return Cancelled()

    log = PublishLog(3, clock=lambda: now[0], later=later)
    caplog.set_level(logging.INFO, "fieldpush.publish")
    for n in range(10):
        log.published(f"e{n}", "work_order", "critical", ["user:a", "team:b"], 0.0021)
    assert len(caplog.records) == 3
    first = caplog.records[0]
    assert first.__dict__["event_id"] == "e0" and first.__dict__["channels"] == 2
    assert first.__dict__["latency_ms"] == 2.1 and first.__dict__["priority"] == "critical"
    [(delay_s, report)] = scheduled  # one report for the second, at its end
    assert delay_s == pytest.approx(1.0)
    now[0] += 1.0
    report()  # the second ends with no publish after it: the count is written anyway
    assert caplog.records[3].getMessage().startswith("7 publish(es) not logged")
    assert caplog.records[3].__dict__["not_logged"] == 7
    log.published("e10", "work_order", "normal", ["team:b"], 0.001)
    assert caplog.records[4].__dict__["event_id"] == "e10"
    assert len(caplog.records) == 5  # the count is not written twice


def test_a_dropped_count_is_written_by_the_next_publish_or_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = PublishLog(1, clock=lambda: now[0], later=lambda delay_s, callback: Cancelled())
    caplog.set_level(logging.INFO, "fieldpush.publish")
    log.published("e0", "k", "normal", ["team:b"], 0.001)
    log.published("e1", "k", "normal", ["team:b"], 0.001)
    now[0] += 1.5
    log.published("e2", "k", "normal", ["team:b"], 0.001)
    log.published("e3", "k", "normal", ["team:b"], 0.001)
    log.close()
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == [
        "published", "1", "published", "1",
    ]  # fmt: skip


async def test_the_dropped_count_is_written_when_the_second_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = PublishLog(1)  # the running loop schedules the report
    caplog.set_level(logging.INFO, "fieldpush.publish")
    log.published("e0", "k", "normal", ["team:b"], 0.001)
    log.published("e1", "k", "normal", ["team:b"], 0.001)
    await eventually(
        lambda: len(caplog.records) == 2, timeout=5, message="the count of the dropped line"
    )
    assert caplog.records[1].__dict__["not_logged"] == 1


class Cancelled:
    """A report that never runs by itself (the test calls what it needs)."""

    def cancel(self) -> None:
        pass


def test_no_publish_lines_at_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "fieldpush.publish")
    PublishLog(0).published("e", "k", "normal", ["team:b"], 0.001)
    assert caplog.records == []


def test_serve_with_log_format_json_writes_json_lines_with_the_request_id() -> None:
    server = ServeProcess("--port", "0", "--log-format", "json").start()
    try:
        headers = {"Authorization": f"Bearer {token('disp', 'dispatcher')}", "X-Request-Id": "r-42"}
        body = {"channels": ["team:north"], "kind": "work_order", "priority": "high", "data": {}}
        reply = httpx.post(server.url + "/v1/publish", json=body, headers=headers, timeout=10)
        assert reply.status_code == 201 and reply.headers["x-request-id"] == "r-42"
        event_id = reply.json()["id"]

        def published() -> list[dict[str, object]]:
            entries = [json.loads(line) for line in server.lines if line.startswith("{")]
            return [e for e in entries if e.get("event_id") == event_id]

        [entry] = eventually_sync(published)
        assert entry["logger"] == "fieldpush.publish" and entry["level"] == "INFO"
        assert (entry["kind"], entry["priority"], entry["channels"]) == ("work_order", "high", 1)
        assert entry["request_id"] == "r-42" and isinstance(entry["latency_ms"], float)
    finally:
        assert server.stop() == 0, server.output
    lines = [line for line in server.output.splitlines() if line.strip()]
    banner = [line for line in lines if line.startswith("fieldpush listening on")]
    assert len(banner) == 1  # describe()'s line on stdout, for people and tests
    for line in lines:
        if line not in banner:
            assert "color_message" not in json.loads(line)  # every log line is a JSON object


def eventually_sync(read: Callable[[], list[dict[str, object]]]) -> list[dict[str, object]]:
    """Poll ``read`` until it returns a non-empty list (the process logs in its
    own time; scaled 10 s)."""
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        found = read()
        if found:
            return list(found)
        time.sleep(0.05)
    raise AssertionError("the publish line was not logged")
