"""Close codes split into "reconnect" and "do not reconnect" in one place."""

from __future__ import annotations

from fieldpush_client.protocol import (
    FATAL_CLOSE_CODES,
    CloseCode,
    ErrorCode,
    is_channel,
    parse_channel,
    should_reconnect,
    user_channel,
)


def test_only_the_fatal_close_codes_stop_reconnecting() -> None:
    assert {code for code in CloseCode if not should_reconnect(code)} == FATAL_CLOSE_CODES
    assert {1007, 1009, 4001, 4003} == FATAL_CLOSE_CODES


def test_a_dropped_connection_and_unknown_codes_are_retried() -> None:
    assert should_reconnect(None)
    assert should_reconnect(1006)
    assert should_reconnect(4999)


def test_error_codes_are_distinct_wire_strings() -> None:
    values = [code.value for code in ErrorCode]
    assert len(set(values)) == len(values)
    assert all(value == value.lower() for value in values)


def test_user_channel_builds_a_channel_parse_channel_reads_back() -> None:
    assert user_channel("u42") == "user:u42"
    assert parse_channel(user_channel("u42")) == ("user", "u42")
    assert not is_channel(user_channel("two words"))
