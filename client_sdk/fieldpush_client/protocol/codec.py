"""Subprotocols and their codecs: one message (a ``dict`` with a ``"type"``)
per frame body, and back.

:class:`JsonCodec` (``fieldpush.v1.json``, text frames) and
:class:`MsgpackCodec` (``fieldpush.v1.msgpack``, binary frames) carry the same
keys. Decoding anything that is not one object/map, or nested deeper than
:data:`~fieldpush_client.protocol.limits.MAX_DEPTH`, raises
:class:`~fieldpush_client.protocol.errors.DecodeError` (the server closes with
1007) and never anything else, whatever the bytes. No subprotocol means JSON
(:func:`codec_for`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final, Protocol

import msgpack

from fieldpush_client.protocol.errors import DecodeError
from fieldpush_client.protocol.limits import MAX_DEPTH

__all__ = [
    "DEFAULT_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "check_depth",
    "codec_for",
]

SUBPROTOCOL_JSON: Final = "fieldpush.v1.json"
SUBPROTOCOL_MSGPACK: Final = "fieldpush.v1.msgpack"
SUBPROTOCOLS: Final = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
DEFAULT_SUBPROTOCOL: Final = SUBPROTOCOL_JSON


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`DecodeError` if ``value`` nests lists and dicts deeper
    than ``limit`` (``value`` itself is depth 1). Iterative: any depth is
    checked without recursion, in time linear in the number of containers."""
    stack: list[tuple[object, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        assert isinstance(children, Iterable)  # only containers are pushed
        if depth > limit:
            raise DecodeError(f"nested deeper than {limit} levels")
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


class Codec(Protocol):
    """Encodes one message per frame. ``binary`` says which frame opcode to use."""

    subprotocol: str
    binary: bool

    def encode(self, message: dict[str, Any]) -> bytes: ...

    def decode(self, frame: bytes) -> dict[str, Any]: ...


class JsonCodec:
    """``fieldpush.v1.json``: one UTF-8 JSON object per text frame."""

    subprotocol = SUBPROTOCOL_JSON
    binary = False

    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def encode(self, message: dict[str, Any]) -> bytes:
        return self._encoder.encode(message).encode()

    def decode(self, frame: bytes) -> dict[str, Any]:
        try:
            value = json.loads(frame)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"not a JSON document: {exc}") from exc
        except RecursionError:
            raise DecodeError(f"nested deeper than {MAX_DEPTH} levels") from None
        if not isinstance(value, dict):
            raise DecodeError("a message must be a JSON object")
        check_depth(value)
        return value


class MsgpackCodec:
    """``fieldpush.v1.msgpack``: one msgpack map per binary frame, same keys as JSON."""

    subprotocol = SUBPROTOCOL_MSGPACK
    binary = True

    def encode(self, message: dict[str, Any]) -> bytes:
        return msgpack.packb(message, use_bin_type=True)

    def decode(self, frame: bytes) -> dict[str, Any]:
        try:
            value = msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise DecodeError(f"not a msgpack document: {exc}") from exc
        if not isinstance(value, dict):
            raise DecodeError("a message must be a msgpack map")
        check_depth(value)
        return value


_CODECS: Final[dict[str, Codec]] = {
    SUBPROTOCOL_JSON: JsonCodec(),
    SUBPROTOCOL_MSGPACK: MsgpackCodec(),
}


def codec_for(subprotocol: str | None) -> Codec:
    """The codec of a negotiated subprotocol; no subprotocol means JSON."""
    return _CODECS[subprotocol or DEFAULT_SUBPROTOCOL]
