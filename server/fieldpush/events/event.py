"""Events as stored and as written to sockets.

An :class:`Event` is one event in one channel's history. Its ``body`` is the
JSON object ``{"id", "kind", "priority", "data"}`` fixed at publish; the
channel, offset and ``ts`` come from its position. The wire forms are built
lazily and cached on the event, so a node encodes each event at most once per
codec however many sessions it reaches. The bytes are built by the protocol layer
(:mod:`fieldpush_client.protocol.event_bytes`), the same messages its types describe.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, unquote

import msgpack

from fieldpush.events.frames import data_frame
from fieldpush.events.offsets import Offset
from fieldpush_client.protocol.event_bytes import (
    encode_body,
    event_payload,
    events_payload,
    json_event_item,
)

__all__ = ["Event", "decode_origin", "encode_body", "encode_origin", "events_frame"]


def encode_origin(origin: tuple[str, str]) -> bytes:
    """An event's origin as stored next to its body: ``<user>/<device>``, each
    percent-encoded, so the token holds no space and no unescaped ``/``."""
    user, device = origin
    return f"{quote(user, safe='')}/{quote(device, safe='')}".encode()


def decode_origin(token: bytes) -> tuple[str, str]:
    """The inverse of :func:`encode_origin`. ValueError when malformed."""
    user, device = token.decode().split("/")
    return unquote(user), unquote(device)


class Event:
    """One stored event of ``channel`` at position ``(epoch, ms, seq)``."""

    __slots__ = (
        "_fields",
        "_items",
        "body",
        "channel",
        "epoch",
        "frames",
        "ms",
        "origin",
        "priority",
        "seq",
    )

    def __init__(
        self,
        channel: str,
        epoch: str,
        ms: int,
        seq: int,
        priority: str,
        body: bytes,
        origin: tuple[str, str] | None = None,
    ) -> None:
        self.channel = channel
        self.epoch = epoch
        self.ms = ms
        self.seq = seq
        self.priority = priority
        self.body = body
        self._fields: dict[str, Any] | None = None
        self._items: list[bytes | None] = [None, None]  # [json, msgpack]
        #: Cached wire frames, [json, msgpack]: read by the delivery hot path.
        self.frames: list[bytes | None] = [None, None]
        #: ``(user, device)`` that made the record change the event announces:
        #: that device does not get it (no echo). Set by the publisher, stored
        #: with the event by the backend, restored on every read.
        self.origin = origin

    def __repr__(self) -> str:
        return f"Event({self.channel!r}, {self.offset!r})"

    @property
    def offset(self) -> str:
        return f"{self.epoch}:{self.ms}-{self.seq}"

    @property
    def position(self) -> Offset:
        return Offset(self.epoch, self.ms, self.seq)

    @property
    def fields(self) -> dict[str, Any]:
        """The decoded body: ``id``, ``kind``, ``priority``, ``data``."""
        if self._fields is None:
            self._fields = json.loads(self.body)
        return self._fields

    @property
    def id(self) -> str:
        return str(self.fields["id"])

    def as_dict(self) -> dict[str, Any]:
        """The event as a message item (the shape of one ``events`` entry)."""
        return {"channel": self.channel, "offset": self.offset, "ts": self.ms, **self.fields}

    def item(self, binary: bool) -> bytes:
        """The event encoded as one item of an ``events`` frame (no ``type``)."""
        cached = self._items[binary]
        if cached is None:
            if binary:
                cached = msgpack.packb(self.as_dict(), use_bin_type=True)
            else:
                cached = json_event_item(self.channel, self.offset, self.ms, self.body)
            self._items[binary] = cached
        return cached

    def frame(self, binary: bool) -> bytes:
        """The complete WebSocket frame of a single ``event`` message."""
        cached = self.frames[binary]
        if cached is None:
            payload = event_payload(self.item(binary), binary)
            cached = self.frames[binary] = data_frame(payload, binary)
        return cached


def events_frame(events: list[Event], binary: bool) -> bytes:
    """One WebSocket frame carrying several events as an ``events`` message."""
    return data_frame(events_payload([e.item(binary) for e in events], binary), binary)
