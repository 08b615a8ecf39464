"""The sync codec (fieldpush.sync.codec), pure: record states and cursors round
trip, the cursor's text is pinned (cursors already handed out must keep
working), and any text that is not a cursor is SyncError ``bad_request``."""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush.backend.base import StoredRecord
from fieldpush.errors import FieldpushError
from fieldpush.sync.codec import (
    LogCursor,
    SnapshotCursor,
    decode_cursor,
    decode_state,
    encode_cursor,
    encode_state,
    types_digest,
)
from fieldpush.sync.errors import SyncError
from fieldpush.sync.hlc import Stamp
from fieldpush.sync.rules import RecordState
from fieldpush_client.protocol import ErrorCode


def _text(value: Any) -> str:
    """``value`` packed as a cursor is (msgpack, base64url, no padding)."""
    return base64.urlsafe_b64encode(msgpack.packb(value, use_bin_type=True)).decode().rstrip("=")


def test_a_record_state_round_trips_with_the_stores_version() -> None:
    state = RecordState(
        fields={
            "name": ("Müller GmbH", Stamp(1_700_000_000_000, 3, "phone-1")),
            "budget": ("1200.50", Stamp(1_700_000_000_001, 0, "server:n1")),
            "tags": (["a", "b"], Stamp(5, 0, "d")),
            "note": (None, Stamp(6, 1, "d")),
        },
        version=0,
    )
    decoded = decode_state(StoredRecord(7, encode_state(state)))
    assert decoded == RecordState(fields=state.fields, deleted=None, version=7)
    assert decoded is not None and isinstance(decoded.fields["name"][1], Stamp)


def test_a_tombstone_round_trips() -> None:
    state = RecordState(fields={}, deleted=Stamp(9, 2, "phone-2"), version=3)
    assert decode_state(StoredRecord(4, encode_state(state))) == RecordState({}, state.deleted, 4)


def test_no_stored_record_is_no_state() -> None:
    assert decode_state(None) is None


@pytest.mark.parametrize(
    "cursor",
    [
        LogCursor("0-0"),
        LogCursor("ab12cd34:1700000000000-0:42"),
        LogCursor(""),
        SnapshotCursor("e:1-0", "customer", "c-1"),
        SnapshotCursor("", "work_order", ""),
        SnapshotCursor("top", "customer", "ünïcødé/?&="),
        LogCursor("0-0", types_digest(["visit_plan"])),
        LogCursor("p", types_digest(None)),
        SnapshotCursor("t", "customer", "c1", types_digest(["customer", "contract"])),
    ],
)
def test_cursors_round_trip(cursor: LogCursor | SnapshotCursor) -> None:
    text = encode_cursor(cursor)
    assert "=" not in text and text.isascii()
    assert decode_cursor(text) == cursor


def test_the_cursor_text_is_pinned() -> None:
    assert encode_cursor(LogCursor("p")) == _text(["l", "p"]) == "kqFsoXA"
    assert encode_cursor(SnapshotCursor("t", "customer", "c1")) == _text(
        ["s", "t", "customer", "c1"]
    )
    digest = types_digest(["visit_plan"])
    assert digest == "1cad56c26ec9a77b"
    assert encode_cursor(LogCursor("p", digest)) == _text(["l", "p", digest])
    assert encode_cursor(SnapshotCursor("t", "c", "1", "*")) == _text(["s", "t", "c", "1", "*"])


def test_the_type_digest_is_of_the_set_not_the_request() -> None:
    assert types_digest(["b", "a", "a"]) == types_digest(["a", "b"]) != types_digest(["a"])
    assert types_digest(None) == "*" != types_digest([])
    assert types_digest(["a\0b"]) != types_digest(["a", "b"])


HOSTILE = [
    "",
    "not-a-cursor",
    "garbage",
    "!!!!",
    "====",
    "kqFs",  # a valid cursor cut short
    "é",
    "\x00",
    "a" * 10_001,
    _text([]),
    _text(["l"]),
    _text(["l", 1]),
    _text(["l", None]),
    _text(["l", b"bytes"]),
    _text(["l", "p", "extra"]),
    _text(["l", "p", ""]),
    _text(["l", "p", "1CAD56C26EC9A77B"]),
    _text(["l", "p", "1cad56c26ec9a77"]),
    _text(["l", "p", "*", "*"]),
    _text(["s", "t", "customer", "c1", "**"]),
    "kqFsoXA" * 200,  # longer than any cursor
    _text(["s", "top", "customer"]),
    _text(["s", "top", "customer", 5]),
    _text(["x", "p"]),
    _text(["L", "p"]),
    _text({"l": "p"}),
    _text("l"),
    _text(2**64 - 1),
    _text([2**63, 2**64 - 1]),
    _text(-(2**63)),
    _text(1e308),
    _text(True),
    _text(None),
    _text(["l", ["p"]]),
    _text(["l", {"p": 1}]),
    base64.urlsafe_b64encode(b"\x91" * 100_000 + b"\xa1l").decode(),  # nested 100000 deep
    base64.urlsafe_b64encode(b"\xdd\xff\xff\xff\xff").decode(),  # an array of 4 G items
    base64.urlsafe_b64encode(b"\x92\xa1l\xa2\xff\xfe").decode(),  # a str not UTF-8
    base64.urlsafe_b64encode(b"\x92\xa1l\xa1p\x00").decode(),  # a cursor, then more bytes
    base64.urlsafe_b64encode(b"\xd4\x01\x00").decode(),  # an ext type
    base64.urlsafe_b64encode(b"\xd6\xff\x00\x00\x00").decode(),  # a broken timestamp
    base64.urlsafe_b64encode(b"\xc1").decode(),  # a reserved byte
]


@pytest.mark.parametrize("text", HOSTILE)
def test_anything_not_a_cursor_is_bad_request(text: str) -> None:
    with pytest.raises(SyncError) as caught:
        decode_cursor(text)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.message == "invalid cursor: send one from a reply, or none"
    assert isinstance(caught.value, FieldpushError)


def _decodes_or_refuses(text: str) -> None:
    try:
        cursor = decode_cursor(text)
    except SyncError as exc:
        assert exc.code is ErrorCode.BAD_REQUEST
    else:
        assert decode_cursor(encode_cursor(cursor)) == cursor


@given(st.text(max_size=200))
def test_any_text_decodes_or_is_bad_request(text: str) -> None:
    _decodes_or_refuses(text)


@given(st.binary(max_size=200))
def test_any_bytes_as_a_cursor_decode_or_are_bad_request(raw: bytes) -> None:
    _decodes_or_refuses(base64.urlsafe_b64encode(raw).decode().rstrip("="))


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text()
        | st.binary(),
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=5), children, max_size=5)
        ),
        max_leaves=20,
    )
)
def test_any_msgpack_value_as_a_cursor_decodes_or_is_bad_request(value: Any) -> None:
    _decodes_or_refuses(_text(value))
