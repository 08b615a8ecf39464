"""Every message both ways: ``parse(m.to_wire()) == m`` and, for valid wire
dicts in canonical form, ``parse(d).to_wire() == d``; directly and through
both codecs (encode, decode, parse)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush_client.protocol import (
    Change,
    Codec,
    EventMsg,
    InvalidMutation,
    JsonCodec,
    MsgpackCodec,
    Mutation,
    MutationResult,
    parse_client_message,
    parse_mutation,
    parse_server_message,
)
from tests.protocol import strategies

#: Each side's messages, its valid wire dicts in canonical form, and its parser.
SIDES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], Callable[..., Any]]] = {
    "client": (strategies.client_messages, strategies.client_wires, parse_client_message),
    "server": (strategies.server_messages, strategies.server_wires, parse_server_message),
}
#: Directly (None), and through each codec: encoded, then decoded.
CODECS: dict[str, Codec | None] = {"direct": None, "json": JsonCodec(), "msgpack": MsgpackCodec()}


def _through(codec: Codec | None, wire: dict[str, Any]) -> dict[str, Any]:
    return wire if codec is None else codec.decode(codec.encode(wire))


@pytest.mark.parametrize("codec", CODECS.values(), ids=CODECS.keys())
@pytest.mark.parametrize("side", SIDES)
@given(data=st.data())
def test_messages_and_wire_dicts_survive_both_ways(
    side: str, codec: Codec | None, data: st.DataObject
) -> None:
    messages, wires, parse = SIDES[side]
    message = data.draw(messages, label="message")
    assert parse(_through(codec, message.to_wire())) == message
    wire = data.draw(wires, label="wire")
    assert parse(_through(codec, wire)).to_wire() == wire


@given(mutation=strategies.mutations | strategies.invalid_mutations)
def test_mutation_items_survive_both_ways(mutation: Mutation | InvalidMutation) -> None:
    assert parse_mutation(mutation.to_wire(), None) == mutation


@given(event=strategies.events)
def test_event_items_carry_no_type(event: EventMsg) -> None:
    item = event.to_item()
    assert "type" not in item
    assert EventMsg.from_dict(item) == event
    assert event.to_wire() == {"type": "event", **item}


@given(wire=strategies.result_wires())
def test_result_items_survive_both_ways(wire: dict[str, Any]) -> None:
    assert MutationResult.from_dict(wire).to_wire() == wire


@given(wire=strategies.change_wires)
def test_change_items_survive_both_ways(wire: dict[str, Any]) -> None:
    assert Change.from_dict(wire).to_wire() == wire
