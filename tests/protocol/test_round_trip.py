"""Every message both ways: ``parse(m.to_wire()) == m`` and, for valid wire
dicts in canonical form, ``parse(d).to_wire() == d``; directly and through
both codecs (encode, decode, parse)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from fieldpush_client.protocol import (
    Change,
    ClientMessage,
    Codec,
    EventMsg,
    InvalidMutation,
    JsonCodec,
    MsgpackCodec,
    Mutation,
    MutationResult,
    ServerMessage,
    parse_client_message,
    parse_mutation,
    parse_server_message,
)
from tests.protocol import strategies

CODECS = [JsonCodec(), MsgpackCodec()]


def _through(codec: Codec, wire: dict[str, Any]) -> dict[str, Any]:
    return codec.decode(codec.encode(wire))


@given(message=strategies.client_messages)
def test_client_message_survives_to_wire_and_parse(message: ClientMessage) -> None:
    assert parse_client_message(message.to_wire()) == message


@given(wire=strategies.client_wires)
def test_client_wire_dict_survives_parse_and_to_wire(wire: dict[str, Any]) -> None:
    assert parse_client_message(wire).to_wire() == wire


@given(message=strategies.server_messages)
def test_server_message_survives_to_wire_and_parse(message: ServerMessage) -> None:
    assert parse_server_message(message.to_wire()) == message


@given(wire=strategies.server_wires)
def test_server_wire_dict_survives_parse_and_to_wire(wire: dict[str, Any]) -> None:
    assert parse_server_message(wire).to_wire() == wire


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.subprotocol)
@given(message=strategies.client_messages)
def test_client_message_through_the_codec(codec: Codec, message: ClientMessage) -> None:
    assert parse_client_message(_through(codec, message.to_wire())) == message


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.subprotocol)
@given(wire=strategies.client_wires)
def test_client_wire_dict_through_the_codec(codec: Codec, wire: dict[str, Any]) -> None:
    assert parse_client_message(_through(codec, wire)).to_wire() == wire


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.subprotocol)
@given(message=strategies.server_messages)
def test_server_message_through_the_codec(codec: Codec, message: ServerMessage) -> None:
    assert parse_server_message(_through(codec, message.to_wire())) == message


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.subprotocol)
@given(wire=strategies.server_wires)
def test_server_wire_dict_through_the_codec(codec: Codec, wire: dict[str, Any]) -> None:
    assert parse_server_message(_through(codec, wire)).to_wire() == wire


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
