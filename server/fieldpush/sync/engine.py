"""The sync engine: mutations in, changes out (PROTOCOL.md section 3, docs/sync.md).

:meth:`SyncEngine.mutate` takes a batch of mutations from one actor and
returns one result per mutation, in order:

1. one round trip loads the records the batch touches and the results kept
   for its ``mid``\\ s (a known ``mid`` returns its first result, nothing else);
2. each mutation is mapped (the actor's side), validated by the schema,
   stamped (a phone's HLC, clamped; the server's clock for the CRM) and merged
   by :func:`fieldpush.sync.rules.merge` against the record as the earlier
   mutations of the batch left it;
3. one round trip commits the batch: per mutation, atomically, the record
   (compare-and-set on its version), the result and the change-log entries.
   A mutation whose record changed meanwhile (another node) is judged again
   against the new state, with the ones after it on that record;
4. changes of ``realtime`` fields are published as ``record.changed`` events
   to ``user:<scope user>`` and ``records:<team>``, with the field's priority
   (``critical`` ones are tracked like any critical event). The device that
   made the change does not get it back.

:meth:`SyncEngine.pull` answers from the change log: the fields changed after
the cursor that the reader may see. Without a cursor it is a full download:
the records of the readable types page by page (``snapshot: true``), then the
log from where it was when the download began. :meth:`SyncEngine.feed` is the
CRM's view of the same log: every applied change and every refused proposal,
with old and new values, actor and device.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from fieldpush.backend.base import (
    STALE,
    PublishRequest,
    RecordStore,
    RecordWrite,
    StoredRecord,
    Tracking,
)
from fieldpush.errors import BackendUnavailable
from fieldpush.events.event import encode_body
from fieldpush.sync.hlc import HybridClock, Stamp, clamp
from fieldpush.sync.mapping import Mappings, TypeMapping, load_mappings
from fieldpush.sync.rules import Actor, Edit, Outcome, RecordState, merge, reaches, scope_of
from fieldpush.sync.schema import PRIORITIES, RecordType, Schema, load_schema
from fieldpush_client.protocol import ErrorCode, InvalidMutation, Mutation, is_channel

if TYPE_CHECKING:
    from fieldpush.identity.auth import Identity
    from fieldpush.node import Node
    from fieldpush.settings import Settings

__all__ = ["SyncEngine", "SyncError", "actor_of", "load_sync_config"]

log = logging.getLogger("fieldpush.sync")

#: How often a batch is judged again when other nodes keep changing its records.
MAX_ATTEMPTS = 8
#: Log entries read per round trip by pull and feed.
LOG_CHUNK = 1000
#: Log entries one pull reads at most (then it answers ``more``): bounds the
#: work of a request whose reader sees few of the changes.
MAX_SCAN = 20 * LOG_CHUNK
EVENT_KIND = "record.changed"


class SyncError(Exception):
    """A pull or push the engine refuses: ``code`` is the protocol's error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def load_sync_config(settings: Settings) -> tuple[Schema, Mappings]:
    """The data dictionary and the mappings the settings name; SchemaError
    (a ConfigError) naming file, record, field and problem if either is broken."""
    schema = load_schema(settings.schema_path)
    return schema, load_mappings(settings.mappings_path, schema)


def actor_of(identity: Identity, device: str) -> Actor:
    return Actor(identity.user, identity.role, device, frozenset(identity.teams))


# ----------------------------------------------------------------- encoding


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False)


def encode_state(state: RecordState) -> bytes:
    deleted = state.deleted
    return _pack(
        {
            "f": {name: [value, *stamp] for name, (value, stamp) in state.fields.items()},
            "x": list(deleted) if deleted is not None else None,
        }
    )


def decode_state(stored: StoredRecord | None) -> RecordState | None:
    if stored is None:
        return None
    raw = _unpack(stored.blob)
    deleted = raw.get("x")
    return RecordState(
        fields={name: (v[0], Stamp(v[1], v[2], v[3])) for name, v in raw["f"].items()},
        deleted=Stamp(*deleted) if deleted is not None else None,
        version=stored.version,
    )


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(_pack(list(parts))).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        parts = _unpack(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, msgpack.UnpackException):
        parts = None
    if not (
        isinstance(parts, list)
        and (
            (len(parts) == 2 and parts[0] == "l" and isinstance(parts[1], str))
            or (len(parts) == 4 and parts[0] == "s" and all(isinstance(p, str) for p in parts[1:]))
        )
    ):
        raise SyncError(ErrorCode.BAD_REQUEST, "invalid cursor: send one from a reply, or none")
    return parts


# ----------------------------------------------------------------- planning


@dataclass(slots=True)
class _Plan:
    """One mutation judged: what to write and what to answer."""

    write: RecordWrite
    result: dict[str, Any]
    rtype: RecordType | None = None
    rid: str = ""
    outcome: Outcome | None = None


class SyncEngine:
    """See the module docstring. One per node."""

    def __init__(self, node: Node, schema: Schema, mappings: Mappings) -> None:
        self._node = node
        self.schema = schema
        self.mappings = mappings
        self.clock = HybridClock(f"server:{node.settings.node_id}")
        self._max_skew_ms = int(node.settings.sync_max_skew_s * 1000)

    @property
    def _store(self) -> RecordStore:
        return self._node.backend.records

    # ------------------------------------------------------------- mutate

    async def mutate(
        self,
        actor: Actor,
        items: Sequence[Mutation | InvalidMutation],
        *,
        idempotent: bool = True,
    ) -> list[dict[str, Any]]:
        """Apply ``items`` in order; one result per item (see the module docstring).
        Raises BackendUnavailable when the store cannot be reached."""
        store = self._store
        keys = [self._result_key(actor, item.mid) for item in items] if idempotent else []
        record_keys = sorted({f"{m.type}:{m.rid}" for m in items if isinstance(m, Mutation)})
        stored, kept = await store.load(record_keys, keys)
        states = {key: decode_state(found) for key, found in zip(record_keys, stored, strict=True)}
        results: list[dict[str, Any] | None] = (
            [_unpack(blob) if blob is not None else None for blob in kept]
            if idempotent
            else [None] * len(items)
        )
        todo = [i for i, result in enumerate(results) if result is None]
        announced: list[_Plan] = []
        for _ in range(MAX_ATTEMPTS):
            plans = [
                self._plan(actor, items[i], keys[i] if idempotent else None, states) for i in todo
            ]
            statuses = await store.commit([plan.write for plan in plans])
            retry, stale = [], set()
            for i, plan, status in zip(todo, plans, statuses, strict=True):
                if status is None:
                    results[i] = plan.result
                    announced.append(plan)
                    continue
                if plan.write.record is not None:
                    stale.add(plan.write.record)
                if status == STALE:
                    retry.append(i)
                else:
                    results[i] = _unpack(status)  # a concurrent replay of the same mid
            if not retry:
                break
            reloaded, _ = await store.load(sorted(stale), [])
            states.update(
                (key, decode_state(found))
                for key, found in zip(sorted(stale), reloaded, strict=True)
            )
            todo = retry
        else:
            raise BackendUnavailable("records kept changing under this batch; retry it")
        await asyncio.gather(*(self._announce(actor, plan) for plan in announced))
        metrics = self._node.metrics
        for result in results:
            assert result is not None
            metrics.mutations[result["status"]] += 1
        return results  # type: ignore[return-value]

    def _result_key(self, actor: Actor, mid: str) -> str:
        return f"{len(actor.user)}:{actor.user}:{len(actor.device)}:{actor.device}:{mid}"

    def _stamp(self, actor: Actor, hlc: tuple[int, int]) -> Stamp:
        if actor.side == "crm":
            return self.clock.now()
        stamp = clamp(Stamp(hlc[0], hlc[1], actor.device), self.clock.wall_ms(), self._max_skew_ms)
        self.clock.observe(stamp)
        return stamp

    def _plan(
        self,
        actor: Actor,
        item: Mutation | InvalidMutation,
        result_key: str | None,
        states: dict[str, RecordState | None],
    ) -> _Plan:
        def refuse(message: str) -> _Plan:
            result = {
                "mid": item.mid,
                "status": "rejected",
                "reason": "validation",
                "message": message,
            }
            return _Plan(RecordWrite(result_key, _pack(result)), result)

        if isinstance(item, InvalidMutation):
            return refuse(item.message)
        rtype = self.schema.types.get(item.type)
        if rtype is None:
            return refuse(f"unknown record type {item.type!r}")
        mapping = self.mappings.of(actor.side, rtype.name)
        fields = None
        if item.fields is not None:
            try:
                fields = self._checked(rtype, mapping, item.fields)
            except ValueError as exc:
                return refuse(str(exc))
        key = f"{rtype.name}:{item.rid}"
        state = states.get(key)
        stamp = self._stamp(actor, item.hlc)
        outcome = merge(rtype, state, Edit(fields, stamp), actor)
        result: dict[str, Any] = {"mid": item.mid, "status": outcome.status}
        if outcome.reason is not None:
            result["reason"] = outcome.reason
        if outcome.reason == "validation":  # required fields missing on create
            missing = sorted(mapping.side_name(n) for n in outcome.fields)
            result["message"] = f"{rtype.name} needs the required field(s) {missing}"
        if outcome.fields:
            result["fields"] = {mapping.side_name(n): r for n, r in outcome.fields.items()}
        after = outcome.state or state
        if outcome.status != "applied" and outcome.reason not in (
            "forbidden",
            "not_found",
            "validation",
        ):
            result["record"] = self._visible(rtype, mapping, actor, after)
        expected = state.version if state is not None else 0
        blob = b""
        if outcome.state is not None:
            outcome.state.version = expected + 1
            states[key] = outcome.state
            blob = encode_state(outcome.state)
        entries = self._log_entries(actor, rtype, item, state, outcome)
        write = RecordWrite(result_key, _pack(result), key, expected, blob, entries)
        return _Plan(write, result, rtype, item.rid, outcome)

    def _checked(
        self, rtype: RecordType, mapping: TypeMapping, fields: dict[str, Any]
    ) -> dict[str, Any]:
        mapped = mapping.inbound(fields)
        unknown = mapped.keys() - rtype.fields.keys()
        if unknown:
            raise ValueError(f"unknown field(s) of {rtype.name}: {sorted(unknown)}")
        return {name: rtype.fields[name].check(value) for name, value in mapped.items()}

    def _visible(
        self, rtype: RecordType, mapping: TypeMapping, actor: Actor, state: RecordState | None
    ) -> dict[str, Any] | None:
        """The record's values ``actor`` may read, in the actor's names."""
        if state is None or state.deleted is not None:
            return None
        readable = rtype.readable_fields(actor.role)
        return mapping.outbound({n: v for n, v in state.values().items() if n in readable})

    def _log_entries(
        self,
        actor: Actor,
        rtype: RecordType,
        item: Mutation,
        before: RecordState | None,
        outcome: Outcome,
    ) -> tuple[bytes, ...]:
        base = {
            "type": rtype.name,
            "rid": item.rid,
            "actor": actor.user,
            "role": actor.role,
            "device": actor.device,
            "mid": item.mid,
            "ts": self.clock.wall_ms(),
            "prev": scope_of(rtype, before),
        }
        entries = []
        if outcome.changed or outcome.created or outcome.deleted:
            entries.append(
                _pack(
                    {
                        **base,
                        "kind": "applied",
                        "fields": {n: list(pair) for n, pair in outcome.changed.items()},
                        "scope": scope_of(rtype, outcome.state),
                        "created": outcome.created,
                        "deleted": outcome.deleted,
                    }
                )
            )
        if outcome.proposed:
            entries.append(
                _pack(
                    {
                        **base,
                        "kind": "proposal",
                        "fields": {n: list(pair) for n, pair in outcome.proposed.items()},
                        "scope": base["prev"],
                    }
                )
            )
        return tuple(entries)

    async def _announce(self, actor: Actor, plan: _Plan) -> None:
        """Publish the committed change of ``realtime`` fields as ``record.changed``."""
        rtype, outcome = plan.rtype, plan.outcome
        if rtype is None or outcome is None or outcome.state is None:
            return
        realtime = {
            name: new
            for name, (_, new) in outcome.changed.items()
            if rtype.fields[name].sync == "realtime"
        }
        if not realtime:
            return
        owner, team = scope_of(rtype, outcome.state)
        named = (f"user:{owner}" if owner else None, f"records:{team}" if team else None)
        channels = [channel for channel in named if channel is not None and is_channel(channel)]
        if not channels:
            return
        priority = min(
            (rtype.fields[name].priority_of(value) for name, value in realtime.items()),
            key=PRIORITIES.index,
        )
        node = self._node
        event_id = node.new_event_id()
        data = {
            "type": rtype.name,
            "rid": plan.rid,
            "fields": self.mappings.of("phone", rtype.name).outbound(realtime),
            "origin": {"user": actor.user, "device": actor.device},
        }
        tracking = None
        if priority == "critical":
            settings = node.settings
            deadline = settings.ack_deadlines_s.get(EVENT_KIND, settings.default_ack_deadline_s)
            tracking = Tracking(EVENT_KIND, round(deadline * 1000))
        try:
            await node.backend.publish(
                PublishRequest(
                    channels=tuple(channels),
                    event_id=event_id,
                    priority=priority,
                    body=encode_body(event_id, EVENT_KIND, priority, data),
                    tracking=tracking,
                    origin=(actor.user, actor.device),
                )
            )
        except BackendUnavailable:
            log.warning(
                "%s %s changed but its event was not published (backend unavailable); "
                "phones get the change by pull",
                rtype.name,
                plan.rid,
            )
            return
        if tracking is not None and f"user:{actor.user}" in channels:
            # The author made the change: it needs no ack from them.
            await asyncio.gather(
                node.dispatch.acked(actor.user, actor.device, [event_id]), return_exceptions=True
            )

    # ------------------------------------------------------------- pull

    def _readable_types(self, actor: Actor, types: Sequence[str] | None) -> list[RecordType]:
        if types is not None:
            unknown = [t for t in types if t not in self.schema.types]
            if unknown:
                raise SyncError(ErrorCode.INVALID, f"unknown record type(s) {unknown}")
        wanted = set(types) if types is not None else None
        return [
            rtype
            for name, rtype in self.schema.types.items()
            if actor.role in rtype.read and (wanted is None or name in wanted)
        ]

    def _page_size(self, limit: int | None) -> int:
        settings = self._node.settings
        return min(limit or settings.sync_page_default, settings.sync_page_max)

    async def pull(
        self,
        actor: Actor,
        cursor: str | None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The ``changes`` reply (without ``id``) for a pull. Raises SyncError
        (``resync`` when the cursor is older than the retained log)."""
        readable = self._readable_types(actor, types)
        size = self._page_size(limit)
        if cursor is None:
            top = await self._store.log_top()
            return await self._snapshot(actor, readable, size, top, 0, "")
        parts = decode_cursor(cursor)
        if parts[0] == "s":
            _, top, type_name, after = parts
            names = [rtype.name for rtype in readable]
            index = names.index(type_name) if type_name in names else len(names)
            return await self._snapshot(actor, readable, size, top, index, after)
        return await self._changes_since(actor, readable, size, parts[1])

    async def _snapshot(
        self,
        actor: Actor,
        readable: list[RecordType],
        size: int,
        top: str,
        index: int,
        after: str,
    ) -> dict[str, Any]:
        changes: list[dict[str, Any]] = []
        store = self._store
        while index < len(readable):
            rtype = readable[index]
            scope = rtype.read[actor.role]
            fields = rtype.readable_fields(actor.role)
            mapping = self.mappings.of(actor.side, rtype.name)
            page = await store.scan(rtype.name, after, size)
            for rid, stored in page:
                after = rid
                state = decode_state(stored)
                assert state is not None
                if state.deleted is not None or not reaches(rtype, scope, actor, state):
                    continue
                values = {n: v for n, v in state.values().items() if n in fields}
                changes.append({"type": rtype.name, "rid": rid, "fields": mapping.outbound(values)})
                if len(changes) >= size:
                    cursor = encode_cursor("s", top, rtype.name, rid)
                    return {"changes": changes, "cursor": cursor, "more": True, "snapshot": True}
            if len(page) < size:
                index, after = index + 1, ""
        return {
            "changes": changes,
            "cursor": encode_cursor("l", top),
            "more": await store.log_top() != top,
            "snapshot": True,
        }

    async def _changes_since(
        self, actor: Actor, readable: list[RecordType], size: int, after: str
    ) -> dict[str, Any]:
        types = {rtype.name: rtype for rtype in readable}
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        complete: set[tuple[str, str]] = set()  # records that entered the scope: send all
        more = False
        scanned = 0
        while True:
            entries, expired = await self._read_log(after, LOG_CHUNK)
            scanned += len(entries)
            if expired:
                raise SyncError(
                    ErrorCode.RESYNC,
                    "the cursor is older than the retained change log: pull without a cursor",
                )
            for position, blob in entries:
                entry = _unpack(blob)
                rtype = types.get(entry["type"])
                if entry["kind"] == "applied" and rtype is not None:
                    key = (entry["type"], entry["rid"])
                    if key not in merged and len(merged) >= size:
                        more = True
                        break
                    self._fold(actor, rtype, entry, merged, complete)
                after = position
            else:
                if len(entries) == LOG_CHUNK:
                    if scanned < MAX_SCAN:
                        continue
                    more = True
            break
        if complete:
            await self._complete(actor, types, merged, complete)
        changes = [
            {"type": t, "rid": rid, **change} for (t, rid), change in merged.items() if change
        ]
        return {"changes": changes, "cursor": encode_cursor("l", after), "more": more}

    async def _read_log(
        self, after: str | None, limit: int
    ) -> tuple[list[tuple[str, bytes]], bool]:
        try:
            entries: list[tuple[str, bytes]]
            entries, expired = await self._store.read_log(after, limit)
        except ValueError:
            raise SyncError(
                ErrorCode.BAD_REQUEST, "invalid cursor: send one from a reply"
            ) from None
        return entries, expired

    def _fold(
        self,
        actor: Actor,
        rtype: RecordType,
        entry: dict[str, Any],
        merged: dict[tuple[str, str], dict[str, Any]],
        complete: set[tuple[str, str]],
    ) -> None:
        """Add one applied log entry to a pull's page."""
        scope = rtype.read[actor.role]
        now = rtype.reaches(scope, actor.user, actor.teams, *entry["scope"])
        before = not entry["created"] and rtype.reaches(
            scope, actor.user, actor.teams, *entry["prev"]
        )
        key = (entry["type"], entry["rid"])
        if entry["deleted"] or not now:
            if before or key in merged:
                merged[key] = {"fields": {}, "removed": True}
                complete.discard(key)
            return
        change = merged.get(key)
        if change is None or change.get("removed"):
            change = merged[key] = {"fields": {}}
            if not before and not entry["created"]:
                complete.add(key)
        readable = rtype.readable_fields(actor.role)
        mapping = self.mappings.of(actor.side, rtype.name)
        change["fields"].update(
            mapping.outbound({n: pair[1] for n, pair in entry["fields"].items() if n in readable})
        )

    async def _complete(
        self,
        actor: Actor,
        types: dict[str, RecordType],
        merged: dict[tuple[str, str], dict[str, Any]],
        keys: set[tuple[str, str]],
    ) -> None:
        """Fill in every readable field of the records that entered the reader's scope."""
        ordered = sorted(keys)
        stored, _ = await self._store.load([f"{t}:{rid}" for t, rid in ordered], [])
        for key, found in zip(ordered, stored, strict=True):
            rtype = types[key[0]]
            state = decode_state(found)
            scope = rtype.read[actor.role]
            if not reaches(rtype, scope, actor, state):
                continue  # it left again since: a later page removes it
            values = self._visible(rtype, self.mappings.of(actor.side, rtype.name), actor, state)
            if values is not None:
                merged[key]["fields"] = {**merged[key]["fields"], **values}  # now's values

    # ------------------------------------------------------------- CRM side

    async def put_record(
        self, actor: Actor, record_type: str, rid: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """The CRM writes a record (``PUT /v1/records/{type}/{id}``): its values
        after the write, in the CRM's names. SyncError if refused."""
        if record_type not in self.schema.types:
            raise SyncError(ErrorCode.NOT_FOUND, f"no record type {record_type!r}")
        item = Mutation(mid="", type=record_type, rid=rid, fields=fields, hlc=(0, 0))
        (result,) = await self.mutate(actor, [item], idempotent=False)
        if result["status"] == "rejected":
            code = ErrorCode.INVALID if result["reason"] == "validation" else ErrorCode.FORBIDDEN
            raise SyncError(code, result.get("message") or f"refused: {result['reason']}")
        stored, _ = await self._store.load([f"{record_type}:{rid}"], [])
        rtype = self.schema.types[record_type]
        values = self._visible(
            rtype, self.mappings.of(actor.side, record_type), actor, decode_state(stored[0])
        )
        return {"type": record_type, "rid": rid, "fields": values or {}}

    async def feed(self, cursor: str | None, limit: int | None) -> dict[str, Any]:
        """``GET /v1/changes``: applied changes and proposals after ``cursor``
        (none: from the oldest retained), in order, in the CRM's names."""
        after = None
        if cursor is not None:
            parts = decode_cursor(cursor)
            if parts[0] != "l":
                raise SyncError(ErrorCode.BAD_REQUEST, "invalid cursor: use one from /v1/changes")
            after = parts[1]
        size = self._page_size(limit)
        entries, expired = await self._read_log(after, size)
        if expired:
            raise SyncError(
                ErrorCode.RESYNC,
                "the cursor is older than the retained change log: start again without a cursor",
            )
        changes = []
        for position, blob in entries:
            entry = _unpack(blob)
            mapping = self.mappings.of("crm", entry["type"])
            olds = mapping.outbound({n: pair[0] for n, pair in entry["fields"].items()})
            news = mapping.outbound({n: pair[1] for n, pair in entry["fields"].items()})
            change = {
                "type": entry["type"],
                "rid": entry["rid"],
                "kind": entry["kind"],
                "fields": {name: {"old": olds[name], "new": news[name]} for name in news},
                "actor": entry["actor"],
                "device": entry["device"],
                "ts": entry["ts"],
                "mid": entry["mid"] or None,
                "cursor": encode_cursor("l", position),
            }
            if entry.get("deleted"):
                change["deleted"] = True
            changes.append(change)
            after = position
        if after is None:  # an empty log
            after = await self._store.log_top()
        return {
            "changes": changes,
            "cursor": encode_cursor("l", after),
            "more": len(entries) == size,
        }
