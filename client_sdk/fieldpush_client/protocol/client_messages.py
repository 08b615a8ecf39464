"""What a client sends: one type per message, each with ``to_wire()``, and the
parsers that validate a decoded message into those types.

Validation is strict, because the server acts on these: an unknown ``type``,
an unknown field (a typo such as ``sinse``), a missing or mistyped field
raises :class:`~fieldpush_client.protocol.errors.ProtocolError` (the server
answers ``error`` ``bad_request`` and keeps the connection). The one
exception is a ``mutate`` item that has a usable ``mid`` but a malformed rest:
it becomes :class:`InvalidMutation`, so that it gets a result of its own and
the other items still apply.

For every message ``m``, ``parse_client_message(m.to_wire()) == m``; for every
valid message ``d`` in canonical form (optional fields left out rather than
``null`` or empty), ``parse_client_message(d).to_wire() == d``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from fieldpush_client.protocol.channels import parse_channel
from fieldpush_client.protocol.digest import Digest, Repair, parse_digest, parse_repair
from fieldpush_client.protocol.errors import ProtocolError
from fieldpush_client.protocol.limits import (
    MAX_APP_LENGTH,
    MAX_CURSOR_LENGTH,
    MAX_DEVICE_LENGTH,
    MAX_ID_LENGTH,
    MAX_MUTATIONS,
    MAX_OFFSET_LENGTH,
    MAX_PULL_CLASSES,
    MAX_TOKEN_LENGTH,
)

__all__ = [
    "BATCH_CLASS",
    "CORE_CLASS",
    "PULL_CLASSES",
    "Ack",
    "ClientMessage",
    "ClientRequest",
    "Hello",
    "InvalidMutation",
    "Mutate",
    "Mutation",
    "Ping",
    "Pull",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "Wiped",
    "parse_classes",
    "parse_client_message",
    "parse_mutate",
    "parse_mutation",
    "request_id_of",
]


@dataclass(slots=True, frozen=True)
class Hello:
    """The first message of a connection: who (``token``, else the upgrade's
    ``Authorization`` header), which device, and the channels to resume."""

    device: str
    token: str | None = None
    #: Channel → the last offset processed, or None for "from now".
    subs: dict[str, str | None] = field(default_factory=dict)
    #: The app and SDK version, for the device registry (an extension; optional).
    app: str | None = None
    type: ClassVar[str] = "hello"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "hello", "device": self.device}
        if self.token is not None:
            wire["token"] = self.token
        if self.subs:
            wire["subs"] = self.subs
        if self.app is not None:
            wire["app"] = self.app
        return wire


@dataclass(slots=True, frozen=True)
class Subscribe:
    id: int
    channel: str
    since: str | None = None
    type: ClassVar[str] = "subscribe"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "subscribe", "id": self.id, "channel": self.channel}
        if self.since is not None:
            wire["since"] = self.since
        return wire


@dataclass(slots=True, frozen=True)
class Unsubscribe:
    id: int
    channel: str
    type: ClassVar[str] = "unsubscribe"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "unsubscribe", "id": self.id, "channel": self.channel}


@dataclass(slots=True, frozen=True)
class Ack:
    ids: tuple[str, ...]
    type: ClassVar[str] = "ack"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "ack", "ids": list(self.ids)}


@dataclass(slots=True, frozen=True)
class Ping:
    id: int
    type: ClassVar[str] = "ping"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "ping", "id": self.id}


@dataclass(slots=True, frozen=True)
class Mutation:
    """One edit of a record (docs/protocol.md section 3): ``fields`` None deletes it;
    ``hlc`` is the device's ``[wall_ms, counter]`` stamp of the edit."""

    mid: str
    type: str
    rid: str
    fields: dict[str, Any] | None
    hlc: tuple[int, int]

    def to_wire(self) -> dict[str, Any]:
        """One item of ``mutate.mutations``."""
        return {
            "mid": self.mid,
            "type": self.type,
            "rid": self.rid,
            "fields": self.fields,
            "hlc": list(self.hlc),
        }


@dataclass(slots=True, frozen=True)
class InvalidMutation:
    """A mutation with a valid ``mid`` but a malformed rest: its result is
    ``rejected`` / ``validation`` with ``message``; the others still apply.
    ``item`` is the item as it was sent."""

    mid: str
    message: str
    item: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """The item as it was sent (it cannot be rebuilt from its parts)."""
        return self.item


@dataclass(slots=True, frozen=True)
class Mutate:
    id: int
    mutations: tuple[Mutation | InvalidMutation, ...]
    type: ClassVar[str] = "mutate"

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "mutate",
            "id": self.id,
            "mutations": [item.to_wire() for item in self.mutations],
        }


#: The data classes a ``pull`` may ask for (docs/protocol.md 3.2): ``core``
#: (every sync class but ``batch``; a pull without ``classes`` gets only it)
#: and ``batch``.
CORE_CLASS: Final = "core"
BATCH_CLASS: Final = "batch"
PULL_CLASSES: Final = (CORE_CLASS, BATCH_CLASS)


def parse_classes(value: object) -> tuple[str, ...] | None:
    """A pull's ``classes`` as sent: None (not sent: the core data), else a
    non-empty list of at most :data:`MAX_PULL_CLASSES` names of
    :data:`PULL_CLASSES`; ``ValueError`` saying what is wrong otherwise."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_PULL_CLASSES:
        raise ValueError(
            f"'classes' must be a list of 1 to {MAX_PULL_CLASSES} data classes {list(PULL_CLASSES)}"
        )
    if not all(isinstance(name, str) and name in PULL_CLASSES for name in value):
        raise ValueError(f"'classes' may name only the data classes {list(PULL_CLASSES)}")
    return tuple(value)


@dataclass(slots=True, frozen=True)
class Pull:
    """``cursor`` None: a full download; ``types`` None: every readable type;
    ``limit`` None: the server's default page size; ``classes`` None: the core
    data only (:data:`PULL_CLASSES`). ``digest`` and ``repair`` (extensions,
    docs/protocol.md 3.8): what the phone holds per record type, and of the
    buckets that differed."""

    id: int
    cursor: str | None = None
    types: tuple[str, ...] | None = None
    limit: int | None = None
    classes: tuple[str, ...] | None = None
    digest: dict[str, Digest] | None = None
    repair: dict[str, Repair] | None = None
    type: ClassVar[str] = "pull"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "pull", "id": self.id}
        if self.cursor is not None:
            wire["cursor"] = self.cursor
        if self.types is not None:
            wire["types"] = list(self.types)
        if self.limit is not None:
            wire["limit"] = self.limit
        if self.classes is not None:
            wire["classes"] = list(self.classes)
        if self.digest is not None:
            wire["digest"] = {name: d.to_wire() for name, d in self.digest.items()}
        if self.repair is not None:
            wire["repair"] = {
                name: {
                    "buckets": sorted(r.buckets),
                    "held": {rid: f"{h:016x}" for rid, h in r.held.items()},
                }
                for name, r in self.repair.items()
            }
        return wire


@dataclass(slots=True, frozen=True)
class Refresh:
    """A new token for the open connection (the answer to ``refresh_needed``,
    or sent earlier): the same user's, else ``error`` ``unauthorized``."""

    id: int
    token: str
    type: ClassVar[str] = "refresh"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "refresh", "id": self.id, "token": self.token}


@dataclass(slots=True, frozen=True)
class Wiped:
    """The device erased its local store after ``wipe`` ``id`` (an answer the
    server does not reply to: it closes the connection with 4003)."""

    id: str
    type: ClassVar[str] = "wiped"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "wiped", "id": self.id}


ClientMessage = Hello | Subscribe | Unsubscribe | Ack | Ping | Mutate | Pull | Refresh | Wiped
#: The client messages that carry an ``id`` and get a reply (or an ``error``) echoing it.
ClientRequest = Subscribe | Unsubscribe | Ping | Mutate | Pull | Refresh

_MUTATION_FIELDS: Final = frozenset({"mid", "type", "rid", "fields", "hlc"})

_CLIENT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "hello": frozenset({"type", "token", "device", "subs", "app"}),
    "subscribe": frozenset({"type", "id", "channel", "since"}),
    "unsubscribe": frozenset({"type", "id", "channel"}),
    "ack": frozenset({"type", "ids"}),
    "ping": frozenset({"type", "id"}),
    "mutate": frozenset({"type", "id", "mutations"}),
    "pull": frozenset({"type", "id", "cursor", "types", "limit", "classes", "digest", "repair"}),
    "refresh": frozenset({"type", "id", "token"}),
    "wiped": frozenset({"type", "id"}),
}


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def _is_int(value: object) -> bool:
    """An integer both codecs carry: not a bool, within 64 bits signed (a
    bigger one cannot be msgpack-encoded, nor stored)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


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
        return InvalidMutation(mid=mid, message=problem, item=item)
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
    if cursor is not None and not (
        isinstance(cursor, str) and 0 < len(cursor) <= MAX_CURSOR_LENGTH
    ):
        raise ProtocolError(
            "pull: 'cursor' must be a string (a cursor from a reply) or null", request_id
        )
    types = message.get("types")
    if types is not None and not (isinstance(types, list) and all(_is_id(t) for t in types)):
        raise ProtocolError("pull: 'types' must be a list of record types", request_id)
    limit = message.get("limit")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise ProtocolError("pull: 'limit' must be a positive integer", request_id)
    try:
        classes = parse_classes(message.get("classes"))
        digest = parse_digest(message.get("digest"))
        repair = parse_repair(message.get("repair"))
    except ValueError as exc:
        raise ProtocolError(f"pull: {exc}", request_id) from None
    return Pull(
        id=request_id,
        cursor=cursor,
        types=tuple(types) if types is not None else None,
        limit=limit,
        classes=classes,
        digest=digest,
        repair=repair,
    )


def _parse_refresh(message: dict[str, Any]) -> Refresh:
    request_id = _require_id(message)
    token = message.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise ProtocolError(
            f"refresh: 'token' must be a string of 1 to {MAX_TOKEN_LENGTH} characters", request_id
        )
    return Refresh(id=request_id, token=token)


def parse_mutate(message: dict[str, Any]) -> Mutate:
    """A ``mutate`` message (also the body of ``POST /v1/sync/push``)."""
    request_id = _require_id(message)
    items = message.get("mutations")
    if not isinstance(items, list) or not items or len(items) > MAX_MUTATIONS:
        raise ProtocolError(
            f"mutate: 'mutations' must be a list of 1 to {MAX_MUTATIONS} mutations", request_id
        )
    return Mutate(id=request_id, mutations=tuple(parse_mutation(i, request_id) for i in items))


def request_id_of(message: dict[str, Any]) -> int | None:
    """The message's ``id`` if it is one a reply may echo (a 64-bit integer), else None."""
    value = message.get("id")
    return value if _is_int(value) else None


def _require_id(message: dict[str, Any]) -> int:
    request_id = request_id_of(message)
    if request_id is None:
        raise ProtocolError(f"{message['type']}: 'id' must be a 64-bit integer")
    return request_id


def _offset(value: object, what: str, request_id: int | None) -> str | None:
    if value is None or (isinstance(value, str) and 0 < len(value) <= MAX_OFFSET_LENGTH):
        return value
    raise ProtocolError(f"{what}: an offset must be a string or null", request_id)


def _channel(value: object, request_id: int | None) -> str:
    try:
        parse_channel(value)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), request_id) from None
    return str(value)


def _parse_hello(message: dict[str, Any]) -> Hello:
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
    app = message.get("app")
    if app is not None and not (isinstance(app, str) and 0 < len(app) <= MAX_APP_LENGTH):
        raise ProtocolError(f"hello: 'app' must be a string of 1 to {MAX_APP_LENGTH} characters")
    return Hello(device=device, token=token, subs=checked, app=app)


def parse_client_message(message: dict[str, Any]) -> ClientMessage:
    """Validate a decoded client message; raise :class:`ProtocolError` if it
    has an unknown type, a missing or mistyped field, or an unknown field."""
    kind = message.get("type")
    request_id = request_id_of(message)
    if not isinstance(kind, str) or kind not in _CLIENT_FIELDS:
        raise ProtocolError(f"unknown message type {kind!r}", request_id)
    unknown = message.keys() - _CLIENT_FIELDS[kind]
    if unknown:
        raise ProtocolError(f"{kind}: unknown field(s) {sorted(map(str, unknown))}", request_id)
    if kind == "hello":
        return _parse_hello(message)
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
    if kind == "refresh":
        return _parse_refresh(message)
    if kind == "wiped":
        wipe_id = message.get("id")
        if not isinstance(wipe_id, str) or not _is_id(wipe_id):
            raise ProtocolError(f"wiped: 'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
        return Wiped(id=wipe_id)
    return Ping(id=_require_id(message))
