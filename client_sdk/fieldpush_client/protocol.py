"""The fieldpush wire protocol, v1: message types, codecs, close and error codes.

This module is pure (Sans-I/O): bytes in, typed messages out, no sockets, no
``await``. The server and the SDK both import it, so the two sides cannot drift.

Codecs
    :class:`JsonCodec` (subprotocol ``fieldpush.v1.json``, text frames) and
    :class:`MsgpackCodec` (``fieldpush.v1.msgpack``, binary frames) turn one
    message (a ``dict`` with a ``"type"``) into one frame body and back.
    Decoding errors raise :class:`DecodeError`; the server answers them with
    close code 1007.

Messages
    :func:`parse_client_message` validates what a phone sends and returns a
    typed message; :func:`parse_server_message` does the same for what the
    server sends. Invalid but decodable messages raise :class:`ProtocolError`,
    which the server answers with an ``error`` of code ``bad_request`` and the
    connection stays open.

Codes
    :class:`CloseCode` lists every close code the server uses; the
    :func:`should_reconnect` predicate says which ones a client retries.
    :class:`ErrorCode` lists the ``code`` values of ``error`` messages and of
    HTTP error bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final, Protocol

import msgpack

__all__ = [
    "CHANNEL_KINDS",
    "DEFAULT_SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Ack",
    "Change",
    "Changes",
    "ClientMessage",
    "CloseCode",
    "Codec",
    "DecodeError",
    "ErrorCode",
    "ErrorMsg",
    "EventMsg",
    "Goaway",
    "Hello",
    "InvalidMutation",
    "JsonCodec",
    "MsgpackCodec",
    "Mutate",
    "Mutated",
    "Mutation",
    "MutationResult",
    "Ping",
    "Pong",
    "Priority",
    "ProtocolError",
    "Pull",
    "ServerMessage",
    "Subscribe",
    "Subscribed",
    "UnknownMsg",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "codec_for",
    "is_channel",
    "parse_channel",
    "parse_client_message",
    "parse_mutate",
    "parse_server_message",
    "should_reconnect",
]

SUBPROTOCOL_JSON: Final = "fieldpush.v1.json"
SUBPROTOCOL_MSGPACK: Final = "fieldpush.v1.msgpack"
SUBPROTOCOLS: Final = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
DEFAULT_SUBPROTOCOL: Final = SUBPROTOCOL_JSON

#: Channel kinds: ``user:<id>``, ``team:<id>``, ``broadcast``, ``dispatch``, and
#: (an extension) ``records:<team id>``: realtime record changes of a team's
#: records, for the supervisors, dispatchers and admins who may read them.
CHANNEL_KINDS: Final = ("user", "team", "broadcast", "dispatch", "records")
MAX_CHANNEL_LENGTH: Final = 200
MAX_DEVICE_LENGTH: Final = 128


class CloseCode(IntEnum):
    """WebSocket close codes. 4xxx are fieldpush's own (PROTOCOL.md section 1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    UNAUTHORIZED = 4001
    FORBIDDEN = 4003
    TOO_SLOW = 4008
    RATE_LIMITED = 4029


#: Close codes after which reconnecting cannot help without a change on the
#: client side (a new token, a fixed client): the SDK stops and raises.
FATAL_CLOSE_CODES: Final = frozenset(
    {CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG}
)


def should_reconnect(code: int | None) -> bool:
    """Whether a client should reconnect (with backoff) after this close code."""
    return code not in FATAL_CLOSE_CODES


class ErrorCode(StrEnum):
    """``code`` of an ``error`` message or of an HTTP error body."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"
    RESYNC = "resync"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class Priority(StrEnum):
    """Event priorities, most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class DecodeError(ValueError):
    """A frame that is not one message of the connection's codec (close 1007)."""


class ProtocolError(ValueError):
    """A decodable message that is not valid (``error`` code ``bad_request``).

    ``request_id`` is the message's ``id`` when it had a valid one, so that the
    error can echo it.
    """

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


# --------------------------------------------------------------------- codecs


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
        if not isinstance(value, dict):
            raise DecodeError("a message must be a JSON object")
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
        return value


_CODECS: Final[dict[str, Codec]] = {
    SUBPROTOCOL_JSON: JsonCodec(),
    SUBPROTOCOL_MSGPACK: MsgpackCodec(),
}


def codec_for(subprotocol: str | None) -> Codec:
    """The codec of a negotiated subprotocol; no subprotocol means JSON."""
    return _CODECS[subprotocol or DEFAULT_SUBPROTOCOL]


# ------------------------------------------------------------------- channels


def parse_channel(name: object) -> tuple[str, str]:
    """Split a channel name into ``(kind, ident)``; ``ident`` is ``""`` for
    ``broadcast`` and ``dispatch``. Raises :class:`ProtocolError` when the name
    is not a valid channel."""
    if not isinstance(name, str) or not name or len(name) > MAX_CHANNEL_LENGTH:
        raise ProtocolError(f"invalid channel name {name!r}")
    kind, sep, ident = name.partition(":")
    if kind in ("broadcast", "dispatch") and not sep:
        return kind, ""
    if (
        kind in ("user", "team", "records")
        and sep
        and ident
        and ident.isprintable()
        and " " not in ident
    ):
        return kind, ident
    raise ProtocolError(
        f"invalid channel name {name!r}: expected user:<id>, team:<id>, "
        "records:<team id>, broadcast or dispatch"
    )


def is_channel(name: object) -> bool:
    """Whether ``name`` is a valid channel name (:func:`parse_channel` accepts it)."""
    try:
        parse_channel(name)
    except ProtocolError:
        return False
    return True


# ------------------------------------------------------------ client messages


@dataclass(slots=True, frozen=True)
class Hello:
    device: str
    token: str | None = None
    subs: dict[str, str | None] = field(default_factory=dict)
    type: str = "hello"


@dataclass(slots=True, frozen=True)
class Subscribe:
    id: int
    channel: str
    since: str | None = None
    type: str = "subscribe"


@dataclass(slots=True, frozen=True)
class Unsubscribe:
    id: int
    channel: str
    type: str = "unsubscribe"


@dataclass(slots=True, frozen=True)
class Ack:
    ids: tuple[str, ...]
    type: str = "ack"


@dataclass(slots=True, frozen=True)
class Ping:
    id: int
    type: str = "ping"


@dataclass(slots=True, frozen=True)
class Mutation:
    """One edit of a record (PROTOCOL.md section 3): ``fields`` None deletes it;
    ``hlc`` is the device's ``[wall_ms, counter]`` stamp of the edit."""

    mid: str
    type: str
    rid: str
    fields: dict[str, Any] | None
    hlc: tuple[int, int]


@dataclass(slots=True, frozen=True)
class InvalidMutation:
    """A mutation with a valid ``mid`` but a malformed rest: its result is
    ``rejected`` / ``validation`` with ``message``; the others still apply."""

    mid: str
    message: str


@dataclass(slots=True, frozen=True)
class Mutate:
    id: int
    mutations: tuple[Mutation | InvalidMutation, ...]
    type: str = "mutate"


@dataclass(slots=True, frozen=True)
class Pull:
    id: int
    cursor: str | None = None
    types: tuple[str, ...] | None = None
    limit: int | None = None
    type: str = "pull"


ClientMessage = Hello | Subscribe | Unsubscribe | Ack | Ping | Mutate | Pull

#: Most characters of a ``mid``, a record type and a record id.
MAX_ID_LENGTH: Final = 200
#: Most mutations in one ``mutate`` the protocol accepts (servers may set less).
MAX_MUTATIONS: Final = 10_000
_MUTATION_FIELDS: Final = frozenset({"mid", "type", "rid", "fields", "hlc"})

_CLIENT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "hello": frozenset({"type", "token", "device", "subs"}),
    "subscribe": frozenset({"type", "id", "channel", "since"}),
    "unsubscribe": frozenset({"type", "id", "channel"}),
    "ack": frozenset({"type", "ids"}),
    "ping": frozenset({"type", "id"}),
    "mutate": frozenset({"type", "id", "mutations"}),
    "pull": frozenset({"type", "id", "cursor", "types", "limit"}),
}


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_mutation(item: object, request_id: int | None) -> Mutation | InvalidMutation:
    """One item of ``mutate.mutations``. An item without a usable ``mid``
    cannot get a result of its own: ProtocolError for the whole message."""
    if not isinstance(item, dict) or not _is_id(item.get("mid")):
        raise ProtocolError(
            f"mutate: every mutation needs a 'mid' (a string of 1 to {MAX_ID_LENGTH} characters)",
            request_id,
        )
    mid = item["mid"]
    unknown = item.keys() - _MUTATION_FIELDS
    problem = None
    hlc = item.get("hlc")
    fields = item.get("fields", ...)
    if unknown:
        problem = f"unknown field(s) {sorted(map(str, unknown))}"
    elif not _is_id(item.get("type")):
        problem = "'type' must be a record type"
    elif not _is_id(item.get("rid")):
        problem = f"'rid' must be a string of 1 to {MAX_ID_LENGTH} characters"
    elif fields is ... or not (fields is None or isinstance(fields, dict)):
        problem = "'fields' must be an object {name: value}, or null to delete"
    elif not (
        isinstance(hlc, list | tuple)
        and len(hlc) == 2
        and all(_is_int(part) and 0 <= part < 2**63 for part in hlc)
    ):
        problem = "'hlc' must be [wall_ms, counter], two non-negative integers"
    if problem is not None:
        return InvalidMutation(mid=mid, message=problem)
    return Mutation(
        mid=mid,
        type=item["type"],
        rid=item["rid"],
        fields=fields,
        hlc=(hlc[0], hlc[1]),  # type: ignore[index]
    )


def _parse_pull(message: dict[str, Any]) -> Pull:
    request_id = _require_id(message)
    cursor = message.get("cursor")
    if cursor is not None and not (isinstance(cursor, str) and 0 < len(cursor) <= 1000):
        raise ProtocolError(
            "pull: 'cursor' must be a string (a cursor from a reply) or null", request_id
        )
    types = message.get("types")
    if types is not None and not (isinstance(types, list) and all(_is_id(t) for t in types)):
        raise ProtocolError("pull: 'types' must be a list of record types", request_id)
    limit = message.get("limit")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise ProtocolError("pull: 'limit' must be a positive integer", request_id)
    return Pull(
        id=request_id, cursor=cursor, types=tuple(types) if types is not None else None, limit=limit
    )


def parse_mutate(message: dict[str, Any]) -> Mutate:
    """A ``mutate`` message (also the body of ``POST /v1/sync/push``)."""
    request_id = _require_id(message)
    items = message.get("mutations")
    if not isinstance(items, list) or not items or len(items) > MAX_MUTATIONS:
        raise ProtocolError(
            f"mutate: 'mutations' must be a list of 1 to {MAX_MUTATIONS} mutations", request_id
        )
    return Mutate(id=request_id, mutations=tuple(parse_mutation(i, request_id) for i in items))


def _request_id(message: dict[str, Any]) -> int | None:
    value = message.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _require_id(message: dict[str, Any]) -> int:
    request_id = _request_id(message)
    if request_id is None:
        raise ProtocolError(f"{message['type']}: 'id' must be an integer")
    return request_id


def _offset(value: object, what: str, request_id: int | None) -> str | None:
    if value is None or (isinstance(value, str) and 0 < len(value) <= 200):
        return value
    raise ProtocolError(f"{what}: an offset must be a string or null", request_id)


def _channel(value: object, request_id: int | None) -> str:
    try:
        parse_channel(value)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), request_id) from None
    assert isinstance(value, str)
    return value


def parse_client_message(message: dict[str, Any]) -> ClientMessage:
    """Validate a decoded client message; raise :class:`ProtocolError` if it
    has an unknown type, a missing or mistyped field, or an unknown field."""
    kind = message.get("type")
    request_id = _request_id(message)
    if not isinstance(kind, str) or kind not in _CLIENT_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}", request_id)
    unknown = message.keys() - _CLIENT_FIELDS[kind]
    if unknown:
        raise ProtocolError(f"{kind}: unknown field(s) {sorted(map(str, unknown))}", request_id)
    if kind == "hello":
        device = message.get("device")
        if not isinstance(device, str) or not 0 < len(device) <= MAX_DEVICE_LENGTH:
            raise ProtocolError(
                f"hello: 'device' must be a string of 1 to {MAX_DEVICE_LENGTH} characters"
            )
        token = message.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolError("hello: 'token' must be a string")
        subs = message.get("subs") or {}
        if not isinstance(subs, dict):
            raise ProtocolError("hello: 'subs' must be an object {channel: offset-or-null}")
        checked = {_channel(ch, None): _offset(off, "hello.subs", None) for ch, off in subs.items()}
        return Hello(device=device, token=token, subs=checked)
    if kind == "subscribe":
        request_id = _require_id(message)
        return Subscribe(
            id=request_id,
            channel=_channel(message.get("channel"), request_id),
            since=_offset(message.get("since"), "subscribe.since", request_id),
        )
    if kind == "unsubscribe":
        request_id = _require_id(message)
        return Unsubscribe(id=request_id, channel=_channel(message.get("channel"), request_id))
    if kind == "ack":
        ids = message.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise ProtocolError("ack: 'ids' must be a list of event ids")
        return Ack(ids=tuple(ids))
    if kind == "mutate":
        return parse_mutate(message)
    if kind == "pull":
        return _parse_pull(message)
    return Ping(id=_require_id(message))


# ------------------------------------------------------------ server messages


@dataclass(slots=True, frozen=True)
class EventMsg:
    """One event, as carried by an ``event`` frame, an ``events`` frame or a poll."""

    channel: str
    offset: str
    id: str
    kind: str
    priority: str
    ts: int
    data: dict[str, Any]

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> EventMsg:
        try:
            return cls(
                channel=item["channel"],
                offset=item["offset"],
                id=item["id"],
                kind=item["kind"],
                priority=item["priority"],
                ts=item["ts"],
                data=item["data"],
            )
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"event without field {exc}") from None


@dataclass(slots=True, frozen=True)
class Welcome:
    session: str
    user: str
    role: str
    node: str
    heartbeat_s: float
    poll: dict[str, float]
    subs: dict[str, dict[str, Any]]


@dataclass(slots=True, frozen=True)
class Subscribed:
    id: int
    channel: str
    offset: str
    recovered: bool


@dataclass(slots=True, frozen=True)
class Unsubscribed:
    id: int
    channel: str


@dataclass(slots=True, frozen=True)
class Pong:
    id: int
    ts: int


@dataclass(slots=True, frozen=True)
class ErrorMsg:
    code: str
    message: str
    id: int | None = None


@dataclass(slots=True, frozen=True)
class Goaway:
    reason: str
    reconnect_after_ms: tuple[int, int]


@dataclass(slots=True, frozen=True)
class MutationResult:
    """``status``: ``applied``, ``conflict`` (``record`` holds the server's
    values) or ``rejected`` (``reason`` says why). ``fields`` (an extension)
    gives each field's own outcome: ``applied``, ``conflict`` or a reason."""

    mid: str
    status: str
    reason: str | None = None
    record: dict[str, Any] | None = None
    fields: dict[str, str] | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> MutationResult:
        return cls(
            mid=item["mid"],
            status=item["status"],
            reason=item.get("reason"),
            record=item.get("record"),
            fields=item.get("fields"),
            message=item.get("message"),
        )


@dataclass(slots=True, frozen=True)
class Mutated:
    id: int
    results: list[MutationResult]


@dataclass(slots=True, frozen=True)
class Change:
    """A record's changed fields since the cursor; ``removed``: it left the
    reader's scope or was deleted (drop it)."""

    type: str
    rid: str
    fields: dict[str, Any]
    removed: bool = False

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Change:
        return cls(
            type=item["type"],
            rid=item["rid"],
            fields=item.get("fields") or {},
            removed=bool(item.get("removed", False)),
        )


@dataclass(slots=True, frozen=True)
class Changes:
    id: int
    changes: list[Change]
    cursor: str
    more: bool
    #: An extension: true on a full download (pull without a cursor): the
    #: reader replaces what it holds of the pulled types.
    snapshot: bool = False


@dataclass(slots=True, frozen=True)
class UnknownMsg:
    """A message of a type this version does not know (a later protocol
    version's, or an extension's): clients ignore it."""

    type: object
    fields: dict[str, Any]


ServerMessage = (
    Welcome
    | Subscribed
    | Unsubscribed
    | EventMsg
    | list[EventMsg]
    | Pong
    | ErrorMsg
    | Goaway
    | Mutated
    | Changes
    | UnknownMsg
)


def parse_server_message(message: dict[str, Any]) -> ServerMessage:
    """Turn a decoded server message into a typed one. An ``events`` frame
    becomes a list of :class:`EventMsg`. Fields and message types this version
    does not know are ignored (the server may extend the protocol): an unknown
    type becomes :class:`UnknownMsg`. A known type with a missing or mistyped
    field raises :class:`ProtocolError`."""
    kind = message.get("type")
    try:
        if kind == "event":
            return EventMsg.from_dict(message)
        if kind == "events":
            return [EventMsg.from_dict(item) for item in message["events"]]
        if kind == "welcome":
            return Welcome(
                session=message["session"],
                user=message["user"],
                role=message["role"],
                node=message["node"],
                heartbeat_s=message["heartbeat_s"],
                poll=message.get("poll") or {},
                subs=message["subs"],
            )
        if kind == "subscribed":
            return Subscribed(
                id=message["id"],
                channel=message["channel"],
                offset=message["offset"],
                recovered=message["recovered"],
            )
        if kind == "unsubscribed":
            return Unsubscribed(id=message["id"], channel=message["channel"])
        if kind == "pong":
            return Pong(id=message["id"], ts=message["ts"])
        if kind == "error":
            return ErrorMsg(code=message["code"], message=message["message"], id=message.get("id"))
        if kind == "mutated":
            return Mutated(
                id=message["id"],
                results=[MutationResult.from_dict(item) for item in message["results"]],
            )
        if kind == "changes":
            return Changes(
                id=message["id"],
                changes=[Change.from_dict(item) for item in message["changes"]],
                cursor=message["cursor"],
                more=bool(message["more"]),
                snapshot=bool(message.get("snapshot", False)),
            )
        if kind == "goaway":
            low, high = message["reconnect_after_ms"]
            return Goaway(reason=message["reason"], reconnect_after_ms=(int(low), int(high)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{kind}: missing or invalid field {exc}") from None
    return UnknownMsg(type=kind, fields=message)
