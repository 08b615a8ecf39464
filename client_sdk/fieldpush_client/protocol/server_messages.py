"""What the server sends: one type per message, each with ``to_wire()``, and
:func:`parse_server_message`, which turns a decoded message into those types.

Parsing is lenient where the server may grow (docs/protocol.md: it may add messages
and fields): fields this version does not know are ignored, and a message of
an unknown type becomes :class:`UnknownMsg`, which clients ignore. A known type
with a missing or mistyped field raises
:class:`~fieldpush_client.protocol.errors.ProtocolError`.

``to_wire()`` builds exactly the dict the server writes (docs/protocol.md
1.2, 3.1, 3.2), extensions included (``mutated`` results' ``fields`` and
``message``, ``changes``' ``snapshot``); optional fields are left out when
they hold their default, except a result's ``record``, which is written
(``null`` when the record is gone) whenever the result shows one
(:meth:`MutationResult.shows_record`). Nested values (``data``, ``record``,
``fields``, ``subs``) are shared with the message, not copied.

For every message ``m``, ``parse_server_message(m.to_wire()) == m``; for every
valid message ``d`` in that canonical form, ``parse_server_message(d).to_wire() == d``.

The server's hot path does not build :class:`EventMsg` objects: it writes
events pre-encoded, once per codec, with the byte builders of
:mod:`~fieldpush_client.protocol.event_bytes`, in the shape
:meth:`EventMsg.to_wire` and :meth:`Events.to_wire` define.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from fieldpush_client.protocol.digest import DriftReport
from fieldpush_client.protocol.errors import ProtocolError

__all__ = [
    "Change",
    "Changes",
    "ErrorMsg",
    "EventMsg",
    "Events",
    "Goaway",
    "Mutated",
    "MutationResult",
    "Pong",
    "RefreshNeeded",
    "Refreshed",
    "ServerMessage",
    "Subscribed",
    "UnknownMsg",
    "Unsubscribed",
    "Welcome",
    "Wipe",
    "parse_server_message",
]


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
    type: ClassVar[str] = "event"

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> EventMsg:
        """An event from an ``event`` message or an item of ``events`` (no ``type``)."""
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

    def to_item(self) -> dict[str, Any]:
        """The event as an item of an ``events`` frame or a poll reply (no ``type``)."""
        return {
            "channel": self.channel,
            "offset": self.offset,
            "ts": self.ts,
            "id": self.id,
            "kind": self.kind,
            "priority": self.priority,
            "data": self.data,
        }

    def to_wire(self) -> dict[str, Any]:
        return {"type": "event", **self.to_item()}


class Events(list[EventMsg]):
    """An ``events`` frame: several events in order. It is a plain list of
    :class:`EventMsg` (code that iterates or compares lists keeps working)
    that can also write itself."""

    type: ClassVar[str] = "events"

    def __init__(self, events: Iterable[EventMsg] = ()) -> None:
        super().__init__(events)

    def to_wire(self) -> dict[str, Any]:
        return {"type": "events", "events": [event.to_item() for event in self]}


@dataclass(slots=True, frozen=True)
class Welcome:
    """The answer to ``hello``. ``subs``: channel → ``{"offset", "recovered"}``,
    or ``{"error": "forbidden"}`` for a refused channel."""

    session: str
    user: str
    role: str
    node: str
    heartbeat_s: float
    poll: dict[str, float]
    subs: dict[str, dict[str, Any]]
    type: ClassVar[str] = "welcome"

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "welcome",
            "session": self.session,
            "user": self.user,
            "role": self.role,
            "node": self.node,
            "heartbeat_s": self.heartbeat_s,
            "poll": self.poll,
            "subs": self.subs,
        }


@dataclass(slots=True, frozen=True)
class Subscribed:
    """``offset`` is the newest position now; ``recovered`` whether the
    ``since`` offset could be resumed (true when there was none)."""

    id: int
    channel: str
    offset: str
    recovered: bool
    type: ClassVar[str] = "subscribed"

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "subscribed",
            "id": self.id,
            "channel": self.channel,
            "offset": self.offset,
            "recovered": self.recovered,
        }


@dataclass(slots=True, frozen=True)
class Unsubscribed:
    """The answer to ``unsubscribe`` (with its ``id``), or, without ``id``, a
    subscription the server ended: a refreshed token no longer allows it."""

    id: int | None
    channel: str
    type: ClassVar[str] = "unsubscribed"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "unsubscribed", "channel": self.channel}
        if self.id is not None:
            wire["id"] = self.id
        return wire


@dataclass(slots=True, frozen=True)
class RefreshNeeded:
    """The connection's token expires at ``expires_at`` (ms since the Unix
    epoch): send ``refresh`` before then (plus the grace), or be closed with 4001."""

    expires_at: int
    type: ClassVar[str] = "refresh_needed"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "refresh_needed", "expires_at": self.expires_at}


@dataclass(slots=True, frozen=True)
class Wipe:
    """Erase the local store (records, queued edits, offsets, key material),
    then answer ``wiped`` with this ``id`` (docs/protocol.md 1.17)."""

    id: str
    type: ClassVar[str] = "wipe"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "wipe", "id": self.id}


@dataclass(slots=True, frozen=True)
class Refreshed:
    """The answer to ``refresh``: the connection now runs on the new token,
    which expires at ``expires_at`` (ms since the Unix epoch)."""

    id: int
    expires_at: int
    type: ClassVar[str] = "refreshed"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "refreshed", "id": self.id, "expires_at": self.expires_at}


@dataclass(slots=True, frozen=True)
class Pong:
    """``ts``: the server's clock, ms since the Unix epoch."""

    id: int
    ts: int
    type: ClassVar[str] = "pong"

    def to_wire(self) -> dict[str, Any]:
        return {"type": "pong", "id": self.id, "ts": self.ts}


@dataclass(slots=True, frozen=True)
class ErrorMsg:
    """``code`` is an :class:`~fieldpush_client.protocol.codes.ErrorCode` value;
    ``id`` echoes the request's, when it had a valid one."""

    code: str
    message: str
    id: int | None = None
    type: ClassVar[str] = "error"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": "error", "code": str(self.code), "message": self.message}
        if self.id is not None:
            wire["id"] = self.id
        return wire


@dataclass(slots=True, frozen=True)
class Goaway:
    """The node drains: reconnect (anywhere) at a random point of the window."""

    reason: str
    reconnect_after_ms: tuple[int, int]
    type: ClassVar[str] = "goaway"

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "goaway",
            "reason": self.reason,
            "reconnect_after_ms": list(self.reconnect_after_ms),
        }


#: Refusals that never show the record (it may be one the sender may not see).
_HIDES_RECORD: Final = frozenset({"validation", "forbidden", "not_found"})


@dataclass(slots=True, frozen=True)
class MutationResult:
    """``status``: ``applied``, ``conflict`` (``record`` holds the server's
    values) or ``rejected`` (``reason`` says why; ``message`` too for
    ``validation``). ``fields`` (an extension) gives each field's own outcome:
    ``applied``, ``conflict`` or a reason."""

    mid: str
    status: str
    reason: str | None = None
    record: dict[str, Any] | None = None
    fields: dict[str, str] | None = None
    message: str | None = None

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> MutationResult:
        """One item of ``mutated.results`` (also what the sync engine returns)."""
        return cls(
            mid=item["mid"],
            status=item["status"],
            reason=item.get("reason"),
            record=item.get("record"),
            fields=item.get("fields"),
            message=item.get("message"),
        )

    def shows_record(self) -> bool:
        """Whether the result carries ``record`` on the wire: every result
        that is not ``applied``, but for the ``validation``, ``forbidden`` and
        ``not_found`` refusals (docs/protocol.md 3.1)."""
        return self.status != "applied" and self.reason not in _HIDES_RECORD

    def to_wire(self) -> dict[str, Any]:
        """One item of ``mutated.results``."""
        wire: dict[str, Any] = {"mid": self.mid, "status": self.status}
        if self.reason is not None:
            wire["reason"] = self.reason
        if self.message is not None:
            wire["message"] = self.message
        if self.fields is not None:
            wire["fields"] = self.fields
        if self.record is not None or self.shows_record():
            wire["record"] = self.record
        return wire


@dataclass(slots=True, frozen=True)
class Mutated:
    """The answer to ``mutate``: one result per mutation, in order."""

    id: int
    results: list[MutationResult]
    type: ClassVar[str] = "mutated"

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "mutated",
            "id": self.id,
            "results": [result.to_wire() for result in self.results],
        }


@dataclass(slots=True, frozen=True)
class Change:
    """A record's changed fields since the cursor; ``removed``: it left the
    reader's scope or was deleted (drop it; ``fields`` is empty)."""

    type: str
    rid: str
    fields: dict[str, Any]
    removed: bool = False

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Change:
        """One item of ``changes.changes`` (also what the sync engine returns)."""
        return cls(
            type=item["type"],
            rid=item["rid"],
            fields=item.get("fields") or {},
            removed=bool(item.get("removed", False)),
        )

    def to_wire(self) -> dict[str, Any]:
        """One item of ``changes.changes``."""
        wire: dict[str, Any] = {"type": self.type, "rid": self.rid, "fields": self.fields}
        if self.removed:
            wire["removed"] = True
        return wire


@dataclass(slots=True, frozen=True)
class Changes:
    """The answer to ``pull``: pull again with ``cursor`` while ``more``."""

    id: int
    changes: list[Change]
    cursor: str
    more: bool
    #: An extension: true on a full download (pull without a cursor): the
    #: reader replaces what it holds of the pulled types.
    snapshot: bool = False
    #: An extension (docs/protocol.md 3.8): the comparison of the pull's
    #: ``digest`` (None: not compared).
    drift: DriftReport | None = None
    #: An extension: the answer to a ``repair``: ``changes`` holds whole
    #: records (replace them) and ``removed`` for records not to be held.
    repair: bool = False
    type: ClassVar[str] = "changes"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": "changes",
            "id": self.id,
            "changes": [change.to_wire() for change in self.changes],
            "cursor": self.cursor,
            "more": self.more,
        }
        if self.snapshot:
            wire["snapshot"] = True
        if self.drift is not None:
            wire["drift"] = self.drift.to_wire()
        if self.repair:
            wire["repair"] = True
        return wire


@dataclass(slots=True, frozen=True)
class UnknownMsg:
    """A message of a type this version does not know (a later protocol
    version's, or an extension's): clients ignore it."""

    type: object
    fields: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """The message as it was received."""
        return self.fields


ServerMessage = (
    Welcome
    | Subscribed
    | Unsubscribed
    | EventMsg
    | Events
    | Pong
    | ErrorMsg
    | Goaway
    | RefreshNeeded
    | Refreshed
    | Wipe
    | Mutated
    | Changes
    | UnknownMsg
)


def parse_server_message(message: dict[str, Any]) -> ServerMessage:
    """Turn a decoded server message into a typed one. An ``events`` frame
    becomes :class:`Events`, a list of :class:`EventMsg`. Fields and message
    types this version does not know are ignored (the server may extend the
    protocol): an unknown type becomes :class:`UnknownMsg`. A known type with a
    missing or mistyped field raises :class:`ProtocolError`."""
    kind = message.get("type")
    try:
        if kind == "event":
            return EventMsg.from_dict(message)
        if kind == "events":
            return Events(EventMsg.from_dict(item) for item in message["events"])
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
            return Unsubscribed(id=message.get("id"), channel=message["channel"])
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
                drift=DriftReport.from_wire(message["drift"]) if "drift" in message else None,
                repair=message.get("repair") is True,
            )
        if kind == "refresh_needed":
            return RefreshNeeded(expires_at=message["expires_at"])
        if kind == "refreshed":
            return Refreshed(id=message["id"], expires_at=message["expires_at"])
        if kind == "wipe":
            wipe_id = message["id"]
            if not isinstance(wipe_id, str):
                raise TypeError("'id'")
            return Wipe(id=wipe_id)
        if kind == "goaway":
            low, high = message["reconnect_after_ms"]
            return Goaway(reason=message["reason"], reconnect_after_ms=(int(low), int(high)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{kind}: missing or invalid field {exc}") from None
    return UnknownMsg(type=kind, fields=message)
