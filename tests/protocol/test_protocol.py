"""The wire codec and message validation, without I/O."""

from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush.events.event import Event, encode_body, events_frame
from fieldpush_client.protocol import (
    MAX_TOKEN_LENGTH,
    Ack,
    CloseCode,
    DecodeError,
    EventMsg,
    Goaway,
    Hello,
    JsonCodec,
    MsgpackCodec,
    Ping,
    ProtocolError,
    Refresh,
    Refreshed,
    RefreshNeeded,
    Subscribe,
    UnknownMsg,
    Unsubscribed,
    Welcome,
    codec_for,
    parse_channel,
    parse_client_message,
    parse_server_message,
    should_reconnect,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("codec", [JsonCodec(), MsgpackCodec()])
@given(data=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_codec_round_trip(codec: JsonCodec | MsgpackCodec, data: dict[str, object]) -> None:
    message = {"type": "event", "data": data}
    assert codec.decode(codec.encode(message)) == message


@pytest.mark.parametrize(
    ("codec", "frame"),
    [
        (JsonCodec(), b"{not json"),
        (JsonCodec(), b"[1, 2]"),
        (JsonCodec(), b"\xff\xfe"),
        (MsgpackCodec(), b"\xc1"),
        (MsgpackCodec(), msgpack.packb([1, 2])),
    ],
)
def test_undecodable_frames_raise_decode_error(
    codec: JsonCodec | MsgpackCodec, frame: bytes
) -> None:
    with pytest.raises(DecodeError):
        codec.decode(frame)


def test_no_subprotocol_means_json() -> None:
    assert isinstance(codec_for(None), JsonCodec)
    assert isinstance(codec_for("fieldpush.v1.msgpack"), MsgpackCodec)


def test_parse_client_messages() -> None:
    assert parse_client_message(
        {"type": "hello", "device": "d", "subs": {"team:a": None}}
    ) == Hello(device="d", subs={"team:a": None})
    assert parse_client_message(
        {"type": "subscribe", "id": 3, "channel": "broadcast", "since": "e:1-2"}
    ) == Subscribe(id=3, channel="broadcast", since="e:1-2")
    assert parse_client_message({"type": "ack", "ids": ["a", "b"]}) == Ack(ids=("a", "b"))
    assert parse_client_message({"type": "ping", "id": 1}) == Ping(id=1)
    assert parse_client_message({"type": "refresh", "id": 2, "token": "t"}) == Refresh(
        id=2, token="t"
    )


@pytest.mark.parametrize(
    ("message", "request_id"),
    [
        ({"type": "nope", "id": 4}, 4),
        ({"id": 4}, 4),
        ({"type": "ping"}, None),
        ({"type": "ping", "id": True}, None),
        ({"type": "ping", "id": 1, "extra": 1}, 1),
        ({"type": "subscribe", "id": 2, "channel": "nope:x"}, 2),
        ({"type": "subscribe", "id": 2, "channel": "team:"}, 2),
        ({"type": "subscribe", "id": 2, "channel": "team:a", "since": 5}, 2),
        ({"type": "hello"}, None),
        ({"type": "hello", "device": "d", "subs": ["team:a"]}, None),
        ({"type": "hello", "device": "d", "token": 1}, None),
        ({"type": "ack", "ids": "x"}, None),
        ({"type": "refresh", "id": 5}, 5),
        ({"type": "refresh", "id": 5, "token": ""}, 5),
        ({"type": "refresh", "id": 5, "token": 7}, 5),
        ({"type": "refresh", "id": 5, "token": None}, 5),
        ({"type": "refresh", "id": 5, "token": "t" * (MAX_TOKEN_LENGTH + 1)}, 5),
        ({"type": "refresh", "id": 5, "token": "t", "sub": "bob"}, 5),
        ({"type": "refresh", "token": "t"}, None),
        ({"type": "refresh", "id": "5", "token": "t"}, None),
    ],
)
def test_invalid_client_messages(message: dict[str, object], request_id: int | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(message)
    assert caught.value.request_id == request_id


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("user:42", ("user", "42")),
        ("team:north", ("team", "north")),
        ("broadcast", ("broadcast", "")),
        ("dispatch", ("dispatch", "")),
    ],
)
def test_channel_names(name: str, parsed: tuple[str, str]) -> None:
    assert parse_channel(name) == parsed


@pytest.mark.parametrize(
    "name", ["", "user", "user:", "broadcast:x", "x:y", "team:a b", 7, "team:" + "x" * 300]
)
def test_invalid_channel_names(name: object) -> None:
    with pytest.raises(ProtocolError):
        parse_channel(name)


def test_reconnect_rules() -> None:
    assert should_reconnect(CloseCode.SERVICE_RESTART)
    assert should_reconnect(CloseCode.TOO_SLOW)
    assert should_reconnect(None)
    assert not should_reconnect(CloseCode.UNAUTHORIZED)
    assert not should_reconnect(CloseCode.FORBIDDEN)


def test_parse_server_messages() -> None:
    welcome = parse_server_message(
        {
            "type": "welcome",
            "session": "s",
            "user": "u",
            "role": "sales",
            "node": "n",
            "heartbeat_s": 25,
            "poll": {},
            "subs": {},
            "new": 1,
        }
    )
    assert isinstance(welcome, Welcome)
    goaway = parse_server_message(
        {"type": "goaway", "reason": "drain", "reconnect_after_ms": [10, 20]}
    )
    assert goaway == Goaway(reason="drain", reconnect_after_ms=(10, 20))
    needed = parse_server_message({"type": "refresh_needed", "expires_at": 1_800_000_000_000})
    assert needed == RefreshNeeded(expires_at=1_800_000_000_000)
    refreshed = parse_server_message({"type": "refreshed", "id": 3, "expires_at": 9})
    assert refreshed == Refreshed(id=3, expires_at=9)
    ended = parse_server_message({"type": "unsubscribed", "channel": "team:a"})
    assert ended == Unsubscribed(id=None, channel="team:a")
    assert ended.to_wire() == {"type": "unsubscribed", "channel": "team:a"}
    with pytest.raises(ProtocolError):
        parse_server_message({"type": "refreshed", "expires_at": 9})
    with pytest.raises(ProtocolError):
        parse_server_message({"type": "welcome"})
    later = parse_server_message({"type": "sync.v2", "cursor": "c1"})
    assert later == UnknownMsg(type="sync.v2", fields={"type": "sync.v2", "cursor": "c1"})


@pytest.mark.parametrize("binary", [False, True])
def test_server_event_frames_decode_to_protocol_messages(binary: bool) -> None:
    codec = MsgpackCodec() if binary else JsonCodec()
    events = [
        Event(
            "team:n",
            "ep",
            1000 + i,
            i,
            "high",
            encode_body(f"id{i}", "k", "high", {"n": i, "s": "ü" * i}),
        )
        for i in range(1, 40)
    ]
    single = events[0].frame(binary)
    assert single[0] == (0x82 if binary else 0x81)
    parsed = parse_server_message(codec.decode(_payload(single)))
    assert parsed == EventMsg("team:n", "ep:1001-1", "id1", "k", "high", 1001, {"n": 1, "s": "ü"})
    many = parse_server_message(codec.decode(_payload(events_frame(events, binary))))
    assert isinstance(many, list)
    assert [e.offset for e in many] == [e.offset for e in events]
    assert [e.data["n"] for e in many] == list(range(1, 40))


def _payload(frame: bytes) -> bytes:
    """Strip an unmasked server frame's header."""
    length = frame[1]
    if length == 126:
        return frame[4:]
    if length == 127:
        return frame[10:]
    return frame[2:]


def test_json_event_frame_is_plain_json() -> None:
    event = Event(
        "user:a", "ep", 5, 1, "normal", encode_body("x", "k", "normal", {"q": '"quoted"'})
    )
    assert json.loads(_payload(event.frame(False)))["data"] == {"q": '"quoted"'}
