"""Hypothesis strategies for the wire protocol: valid messages as typed objects
(``*_messages``) and, independently, valid wire dicts in canonical form
(``*_wires``: optional fields either absent or holding a non-default value)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from fieldpush_client.protocol import (
    PULL_CLASSES,
    Ack,
    Change,
    Changes,
    ErrorCode,
    ErrorMsg,
    EventMsg,
    Events,
    Goaway,
    Hello,
    Mutate,
    Mutated,
    Mutation,
    MutationResult,
    Ping,
    Pong,
    Priority,
    Pull,
    Refresh,
    Refreshed,
    RefreshNeeded,
    Subscribe,
    Subscribed,
    UnknownMsg,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    Wipe,
    parse_mutation,
)

SERVER_TYPES = frozenset(
    {
        "event",
        "events",
        "welcome",
        "subscribed",
        "unsubscribed",
        "pong",
        "error",
        "goaway",
        "refresh_needed",
        "refreshed",
        "wipe",
        "mutated",
        "changes",
    }
)

# ------------------------------------------------------------------ scalars

#: Characters both codecs carry unchanged (no lone surrogates: they are not UTF-8).
utf8 = st.characters(blacklist_categories=["Cs"])
text = st.text(utf8, max_size=12)
name = st.text(utf8, min_size=1, max_size=20)
#: Integers msgpack can carry (int64).
int64 = st.integers(-(2**63), 2**63 - 1)
request_id = int64
offset = name
#: Printable, without spaces: what a channel's id may be.
ident = st.text(st.characters(blacklist_categories=["C", "Z"]), min_size=1, max_size=20)
channel = st.sampled_from(["broadcast", "dispatch"]) | st.builds(
    "{}:{}".format, st.sampled_from(["user", "team", "records"]), ident
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
json_object = st.dictionaries(text, json_values, max_size=4)
hlc = st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
statuses = st.sampled_from(["applied", "conflict", "rejected"])
reasons = st.sampled_from(["validation", "field_locked", "mdm_owned", "forbidden", "not_found"])
error_codes = st.sampled_from(list(ErrorCode)) | name
priorities = st.sampled_from([p.value for p in Priority])

# ---------------------------------------------------------- client messages

mutations = st.builds(
    Mutation, mid=name, type=name, rid=name, fields=st.none() | json_object, hlc=hlc
)
#: Items with a usable ``mid`` and a malformed rest (an ``InvalidMutation``).
invalid_mutation_items = st.fixed_dictionaries(
    {"mid": name, "type": name, "rid": name, "fields": json_object},
) | st.fixed_dictionaries(
    {"mid": name, "type": name, "rid": name, "fields": json_object, "hlc": text | int64}
)
invalid_mutations = invalid_mutation_items.map(lambda item: parse_mutation(item, None))

client_messages = st.one_of(
    st.builds(
        Hello,
        device=st.text(utf8, min_size=1, max_size=128),
        token=st.none() | text,
        subs=st.dictionaries(channel, st.none() | offset, max_size=3),
    ),
    st.builds(Subscribe, id=request_id, channel=channel, since=st.none() | offset),
    st.builds(Unsubscribe, id=request_id, channel=channel),
    st.builds(Ack, ids=st.lists(name, max_size=4).map(tuple)),
    st.builds(Ping, id=request_id),
    st.builds(Refresh, id=request_id, token=name),
    st.builds(
        Mutate,
        id=request_id,
        mutations=st.lists(mutations | invalid_mutations, min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        Pull,
        id=request_id,
        cursor=st.none() | name,
        types=st.none() | st.lists(name, max_size=3).map(tuple),
        limit=st.none() | st.integers(1, 2**31),
    ),
)


def _wire(
    required: dict[str, st.SearchStrategy[Any]],
    optional: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional or {})


mutation_wires = _wire(
    {
        "mid": name,
        "type": name,
        "rid": name,
        "fields": st.none() | json_object,
        "hlc": hlc.map(list),
    }
)

client_wires = st.one_of(
    _wire(
        {"type": st.just("hello"), "device": name},
        {
            "token": text,
            "subs": st.dictionaries(channel, st.none() | offset, min_size=1),
            "app": name,
        },
    ),
    _wire({"type": st.just("subscribe"), "id": request_id, "channel": channel}, {"since": offset}),
    _wire({"type": st.just("unsubscribe"), "id": request_id, "channel": channel}),
    _wire({"type": st.just("ack"), "ids": st.lists(name, max_size=4)}),
    _wire({"type": st.just("ping"), "id": request_id}),
    _wire({"type": st.just("refresh"), "id": request_id, "token": name}),
    _wire({"type": st.just("wiped"), "id": name}),
    _wire(
        {
            "type": st.just("mutate"),
            "id": request_id,
            "mutations": st.lists(mutation_wires | invalid_mutation_items, min_size=1, max_size=4),
        }
    ),
    _wire(
        {"type": st.just("pull"), "id": request_id},
        {
            "cursor": name,
            "types": st.lists(name, max_size=3),
            "limit": st.integers(1, 2**31),
            "classes": st.lists(st.sampled_from(PULL_CLASSES), min_size=1, max_size=3),
        },
    ),
)

# ---------------------------------------------------------- server messages

events = st.builds(
    EventMsg,
    channel=channel,
    offset=offset,
    id=name,
    kind=name,
    priority=priorities,
    ts=int64,
    data=json_object,
)
results = st.builds(
    MutationResult,
    mid=name,
    status=statuses,
    reason=st.none() | reasons,
    record=st.none() | json_object,
    fields=st.none() | st.dictionaries(text, statuses | reasons, max_size=3),
    message=st.none() | text,
)
changes = st.builds(Change, type=name, rid=name, fields=json_object, removed=st.booleans())
sub_states = st.fixed_dictionaries(
    {"offset": offset, "recovered": st.booleans()}
) | st.fixed_dictionaries({"error": st.just("forbidden")})
heartbeat = st.floats(0, 3600, allow_nan=False) | st.integers(1, 3600)


def _unknown(kind: str, fields: dict[str, Any]) -> UnknownMsg:
    return UnknownMsg(type=kind, fields={**fields, "type": kind})


unknown_types = name.filter(lambda kind: kind not in SERVER_TYPES)

server_messages = st.one_of(
    events,
    st.lists(events, max_size=3).map(Events),
    st.builds(
        Welcome,
        session=name,
        user=name,
        role=name,
        node=name,
        heartbeat_s=heartbeat,
        poll=st.dictionaries(name, heartbeat, max_size=3),
        subs=st.dictionaries(channel, sub_states, max_size=3),
    ),
    st.builds(Subscribed, id=request_id, channel=channel, offset=offset, recovered=st.booleans()),
    st.builds(Unsubscribed, id=st.none() | request_id, channel=channel),
    st.builds(RefreshNeeded, expires_at=int64),
    st.builds(Refreshed, id=request_id, expires_at=int64),
    st.builds(Wipe, id=name),
    st.builds(Pong, id=request_id, ts=int64),
    st.builds(ErrorMsg, code=error_codes, message=text, id=st.none() | request_id),
    st.builds(Goaway, reason=name, reconnect_after_ms=st.tuples(int64, int64)),
    st.builds(Mutated, id=request_id, results=st.lists(results, max_size=3)),
    st.builds(
        Changes,
        id=request_id,
        changes=st.lists(changes, max_size=3),
        cursor=name,
        more=st.booleans(),
        snapshot=st.booleans(),
    ),
    st.builds(_unknown, unknown_types, json_object),
)

event_items = _wire(
    {
        "channel": channel,
        "offset": offset,
        "ts": int64,
        "id": name,
        "kind": name,
        "priority": priorities,
        "data": json_object,
    }
)


@st.composite
def result_wires(draw: st.DrawFn) -> dict[str, Any]:
    """A ``mutated`` result: ``record`` (maybe ``null``) whenever the result
    shows one; otherwise only a record that is there."""
    wire = draw(
        _wire(
            {"mid": name, "status": statuses},
            {
                "reason": reasons,
                "message": text,
                "fields": st.dictionaries(text, statuses | reasons, max_size=3),
            },
        )
    )
    shows = wire["status"] != "applied" and wire.get("reason") not in (
        "validation",
        "forbidden",
        "not_found",
    )
    record = draw(st.none() | json_object)
    if shows or record is not None:
        wire["record"] = record
    return wire


change_wires = _wire(
    {"type": name, "rid": name, "fields": json_object}, {"removed": st.just(True)}
) | _wire({"type": name, "rid": name, "fields": st.just({}), "removed": st.just(True)})

server_wires = st.one_of(
    event_items.map(lambda item: {"type": "event", **item}),
    _wire({"type": st.just("events"), "events": st.lists(event_items, max_size=3)}),
    _wire(
        {
            "type": st.just("welcome"),
            "session": name,
            "user": name,
            "role": name,
            "node": name,
            "heartbeat_s": heartbeat,
            "poll": st.dictionaries(name, heartbeat, max_size=3),
            "subs": st.dictionaries(channel, sub_states, max_size=3),
        }
    ),
    _wire(
        {
            "type": st.just("subscribed"),
            "id": request_id,
            "channel": channel,
            "offset": offset,
            "recovered": st.booleans(),
        }
    ),
    _wire({"type": st.just("unsubscribed"), "channel": channel}, {"id": request_id}),
    _wire({"type": st.just("refresh_needed"), "expires_at": int64}),
    _wire({"type": st.just("refreshed"), "id": request_id, "expires_at": int64}),
    _wire({"type": st.just("wipe"), "id": name}),
    _wire({"type": st.just("pong"), "id": request_id, "ts": int64}),
    _wire(
        {"type": st.just("error"), "code": error_codes.map(str), "message": text},
        {"id": request_id},
    ),
    _wire(
        {
            "type": st.just("goaway"),
            "reason": name,
            "reconnect_after_ms": st.lists(int64, min_size=2, max_size=2),
        }
    ),
    _wire({"type": st.just("mutated"), "id": request_id, "results": st.lists(result_wires())}),
    _wire(
        {
            "type": st.just("changes"),
            "id": request_id,
            "changes": st.lists(change_wires, max_size=3),
            "cursor": name,
            "more": st.booleans(),
        },
        {"snapshot": st.just(True)},
    ),
    st.builds(lambda kind, fields: {**fields, "type": kind}, unknown_types, json_object),
)
