"""The events' pre-encoded fast path decodes to exactly ``EventMsg.to_wire()``
and ``Events.to_wire()``, in both codecs, and matches the server's bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush.events.event import Event, events_frame
from fieldpush_client.protocol import (
    EventMsg,
    Events,
    JsonCodec,
    MsgpackCodec,
    encode_body,
    event_payload,
    events_payload,
    json_event_item,
    parse_server_message,
)
from tests.protocol import strategies

JSON, MSGPACK = JsonCodec(), MsgpackCodec()


def _item(event: EventMsg, binary: bool) -> bytes:
    if binary:
        return MSGPACK.encode(event.to_item())
    body = encode_body(event.id, event.kind, event.priority, event.data)
    return json_event_item(event.channel, event.offset, event.ts, body)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
@given(event=strategies.events)
def test_one_event_is_its_wire_message(binary: bool, event: EventMsg) -> None:
    codec = MSGPACK if binary else JSON
    item = _item(event, binary)
    assert codec.decode(item) == event.to_item()
    decoded = codec.decode(event_payload(item, binary))
    assert decoded == event.to_wire()
    assert parse_server_message(decoded) == event


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
@given(events=st.lists(strategies.events, max_size=20))
def test_several_events_are_their_wire_message(binary: bool, events: list[EventMsg]) -> None:
    codec = MSGPACK if binary else JSON
    decoded = codec.decode(events_payload([_item(e, binary) for e in events], binary))
    assert decoded == Events(events).to_wire()
    assert parse_server_message(decoded) == events


@pytest.mark.parametrize("count", [15, 16, 65535, 65536])
def test_msgpack_arrays_of_every_size_class(count: int) -> None:
    event = EventMsg("broadcast", "e:1-1", "x", "k", "low", 1, {})
    decoded = MSGPACK.decode(events_payload([_item(event, True)] * count, True))
    assert len(decoded["events"]) == count


def test_a_msgpack_item_that_is_no_small_map_is_refused() -> None:
    with pytest.raises(ValueError, match="map"):
        event_payload(MSGPACK.encode({str(n): n for n in range(15)}), True)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_the_bytes_are_the_servers(binary: bool) -> None:
    events = [
        Event("team:n", "ep", 1000 + i, i, "high", encode_body(f"id{i}", "k", "high", {"n": i}))
        for i in range(1, 20)
    ]
    messages = [
        EventMsg(e.channel, e.offset, e.id, "k", "high", e.ms, {"n": e.seq}) for e in events
    ]
    items = [_item(message, binary) for message in messages]
    assert [e.item(binary) for e in events] == items
    assert events[0].frame(binary).endswith(event_payload(items[0], binary))
    assert events_frame(events, binary).endswith(events_payload(items, binary))
