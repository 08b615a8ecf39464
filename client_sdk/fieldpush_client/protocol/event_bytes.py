"""Events pre-encoded: the delivery hot path's bytes, built here so that they
are exactly the messages :meth:`EventMsg.to_wire` and :meth:`Events.to_wire`
describe, without a dict per subscriber.

A node encodes each event once per codec and writes the same bytes to every
subscriber (docs/architecture.md: "encode once"). The pieces:

- :func:`encode_body`: the part fixed at publish, ``{"id", "kind",
  "priority", "data"}`` as compact UTF-8 JSON (what history stores);
- an *item* (an event without ``type``): :func:`json_event_item` splices the
  stored body in without decoding it; a msgpack item is
  ``MsgpackCodec().encode(event.to_item())``;
- :func:`event_payload` turns one item into an ``event`` message,
  :func:`events_payload` several into one ``events`` message.

Each returns a frame body (the transport adds the WebSocket header).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["encode_body", "event_payload", "events_payload", "json_event_item"]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: msgpack: a map of 15 entries at most is one byte 0x80 + count ("fixmap").
_FIXMAP: Final = 0x80
_FIXMAP_MAX: Final = 0x8F
_MSGPACK_TYPE_EVENT: Final = b"\xa4type\xa5event"
_MSGPACK_EVENTS_HEAD: Final = b"\x82\xa4type\xa6events\xa6events"


def encode_body(event_id: str, kind: str, priority: str, data: dict[str, Any]) -> bytes:
    """The stored body of an event: compact JSON, UTF-8."""
    return _dumps({"id": event_id, "kind": kind, "priority": priority, "data": data}).encode()


def json_event_item(channel: str, offset: str, ts: int, body: bytes) -> bytes:
    """One event as a JSON item (no ``type``): the position's fields, then the
    stored ``body`` (from :func:`encode_body`) as it is."""
    head = f'{{"channel":{_dumps(channel)},"offset":{_dumps(offset)},"ts":{ts:d},'
    return head.encode() + body[1:]


def event_payload(item: bytes, binary: bool) -> bytes:
    """An ``event`` message from one encoded item (JSON or, ``binary``,
    msgpack). Raises ValueError for a msgpack item that is not a small map."""
    if not binary:
        return b'{"type":"event",' + item[1:]
    if not item or not _FIXMAP <= item[0] < _FIXMAP_MAX:
        raise ValueError("a msgpack event item must be a map of at most 14 entries")
    return bytes((item[0] + 1,)) + _MSGPACK_TYPE_EVENT + item[1:]


def events_payload(items: Sequence[bytes], binary: bool) -> bytes:
    """One ``events`` message from encoded items, in order."""
    if not binary:
        return b'{"type":"events","events":[' + b",".join(items) + b"]}"
    count = len(items)
    if count < 16:
        array = bytes((0x90 | count,))
    elif count < 65536:
        array = struct.pack("!BH", 0xDC, count)
    else:
        array = struct.pack("!BI", 0xDD, count)
    return _MSGPACK_EVENTS_HEAD + array + b"".join(items)
