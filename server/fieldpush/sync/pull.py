"""A reader's pull: the changes it may see after its cursor (docs/protocol.md section 3).

With a :class:`~fieldpush.sync.codec.LogCursor`, :meth:`Puller.pull` answers
from the change log: per record, the fields changed after the cursor that the
reader's role may read, within its scope. A record that left the scope is
``removed``; one that entered it is sent whole. A page holds at most the page
size of records and reads at most :data:`MAX_SCAN` log entries (then ``more``),
so a reader who sees few of the changes costs a bounded amount per request.

A cursor is valid for the type set it was pulled with
(:func:`~fieldpush.sync.codec.types_digest`, inside the cursor): another set
is refused (``bad_request``), because the cursor's position says nothing
about the other types' changes before it. Cursors bound to no set (before
issue 13, docs/protocol.md 3.2) are taken with any.

Data classes (docs/sync.md, "Batch sync class"): a pull gets the core data
unless it asks for others (``classes``). Of the classes it asks for it gets
only those fields: a core pull strips every ``batch`` field and leaves out the
record types of ``sync = "batch"`` (naming one in ``types`` is refused,
``invalid``); a ``["batch"]`` pull gets only batch fields, of the records
whose batch fields changed (and ``removed`` as a core pull). The classes are
part of the cursor's selection like the types: a cursor of a batch pull is
refused for a core pull, and the other way round.

Without a cursor it is a full download: the records of the readable types page
by page (``snapshot: true``, continued by a
:class:`~fieldpush.sync.codec.SnapshotCursor`), then the log from where it was
when the download began.

Drift (docs/sync.md, "Data drift"): a core pull may carry the phone's
``digest`` of what it holds, or a ``repair`` of the buckets that differed.
Both are acted on only when the pull, from a log cursor, found nothing new for
the reader (no change, no ``more``), and as often as :class:`DriftCheck
<fieldpush.sync.drift.DriftCheck>` allows the device: then the reply gets ``drift``
(:meth:`DriftCheck.compare <fieldpush.sync.drift.DriftCheck.compare>`) or the
repaired records (:meth:`DriftCheck.repair
<fieldpush.sync.drift.DriftCheck.repair>`, ``repair: true``). Otherwise
(a full download, changes to send) they are ignored: the phone tries again.
A digest or repair naming a record type the schema does not have, or sent
with other data classes than the core data, is ``bad_request``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fieldpush.sync.catalog import Catalog
from fieldpush.sync.changelog import Paging, read_log
from fieldpush.sync.codec import (
    EntryKind,
    LogCursor,
    SnapshotCursor,
    decode_cursor,
    decode_state,
    encode_cursor,
    types_digest,
    unpack,
)
from fieldpush.sync.drift import DriftCheck, Readable
from fieldpush.sync.errors import SyncError
from fieldpush.sync.rules import Actor, reaches
from fieldpush.sync.schema import CORE, RecordType
from fieldpush.sync.view import visible
from fieldpush_client.protocol import Digest, ErrorCode, Repair

__all__ = ["LOG_CHUNK", "MAX_SCAN", "OTHER_TYPES", "Puller"]

#: The refusal of a cursor pulled with another type set: what to do instead.
OTHER_TYPES = (
    "this cursor was pulled with another set of types: pull these types with"
    " their own cursor (keep one cursor per set of types), or without a cursor"
    " to download them whole"
)

#: Log entries read per round trip.
LOG_CHUNK = 1000
#: Log entries one pull reads at most (then it answers ``more``): bounds the
#: work of a request whose reader sees few of the changes.
MAX_SCAN = 20 * LOG_CHUNK

#: One record's change on a page, by ``(type, rid)``.
_Merged = dict[tuple[str, str], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Selected:
    """A record type a pull reads, and the fields of it the reader gets: the
    readable ones of the data classes asked for."""

    rtype: RecordType
    fields: frozenset[str]
    #: The fields of the classes asked for, readable or not.
    in_classes: frozenset[str]


class Puller:
    """See the module docstring."""

    def __init__(self, catalog: Catalog, paging: Paging, drift: DriftCheck) -> None:
        self._catalog = catalog
        self._paging = paging
        self._drift = drift

    async def pull(
        self,
        actor: Actor,
        cursor: str | None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
        classes: Sequence[str] | None = None,
        digest: Mapping[str, Digest] | None = None,
        repair: Mapping[str, Repair] | None = None,
    ) -> dict[str, Any]:
        """The ``changes`` reply (without ``id``) for a pull of the data
        ``classes`` (None: the core data), with the phone's ``digest`` or
        ``repair`` (see the module docstring). Raises SyncError (``resync``
        when the cursor is older than the retained log)."""
        chosen = frozenset(classes) if classes is not None else frozenset({CORE})
        self._check_drift_request(chosen, digest, repair)
        readable = self._readable_types(actor, types, chosen)
        size = self._paging.size(limit)
        selection = types_digest(types, classes)
        if cursor is None:
            top = await self._catalog.store.log_top()
            return await self._snapshot(actor, readable, size, selection, top, 0, "")
        decoded = decode_cursor(cursor)
        if decoded.types not in (None, selection):
            raise SyncError(ErrorCode.BAD_REQUEST, OTHER_TYPES)
        match decoded:
            case SnapshotCursor(top, type_name, after):
                names = [selected.rtype.name for selected in readable]
                index = names.index(type_name) if type_name in names else len(names)
                return await self._snapshot(actor, readable, size, selection, top, index, after)
            case LogCursor(position):
                reply = await self._changes_since(actor, readable, size, selection, position)
        if reply["changes"] or reply["more"]:
            return reply  # not caught up: a digest would compare lag, not drift
        core = {s.rtype.name: Readable(s.rtype, s.fields) for s in readable}
        if repair is not None:
            repaired = await self._drift.repair(actor, core, repair)
            if repaired is not None:
                reply["changes"], reply["repair"] = repaired, True
        elif digest is not None:
            report = await self._drift.compare(actor, core, digest)
            if report is not None:
                reply["drift"] = report.to_wire()
        return reply

    def _check_drift_request(
        self,
        classes: frozenset[str],
        digest: Mapping[str, Digest] | None,
        repair: Mapping[str, Repair] | None,
    ) -> None:
        """SyncError ``bad_request`` for a digest or repair the pull cannot take."""
        for what, asked in (("digest", digest), ("repair", repair)):
            if asked is None:
                continue
            if classes != {CORE}:
                raise SyncError(ErrorCode.BAD_REQUEST, f"{what}: only with the core data")
            unknown = sorted(set(asked) - set(self._catalog.schema.types))
            if unknown:
                raise SyncError(ErrorCode.BAD_REQUEST, f"{what}: unknown record type(s) {unknown}")

    def _readable_types(
        self, actor: Actor, types: Sequence[str] | None, classes: frozenset[str]
    ) -> list[_Selected]:
        schema_types = self._catalog.schema.types
        if types is not None:
            unknown = [t for t in types if t not in schema_types]
            if unknown:
                raise SyncError(ErrorCode.INVALID, f"unknown record type(s) {unknown}")
            empty = [t for t in types if not schema_types[t].fields_of(classes)]
            if empty:
                hint = (
                    'hold only batch data: pull them with classes ["batch"]'
                    if classes == {CORE}
                    else f"hold no data of the classes {sorted(classes)}"
                )
                raise SyncError(ErrorCode.INVALID, f"record type(s) {empty} {hint}")
        wanted = set(types) if types is not None else None
        return [
            _Selected(
                rtype,
                rtype.readable_fields(actor.role) & rtype.fields_of(classes),
                rtype.fields_of(classes),
            )
            for name, rtype in schema_types.items()
            if actor.role in rtype.read
            and (wanted is None or name in wanted)
            and rtype.fields_of(classes)
        ]

    async def _snapshot(
        self,
        actor: Actor,
        readable: list[_Selected],
        size: int,
        digest: str,
        top: str,
        index: int,
        after: str,
    ) -> dict[str, Any]:
        changes: list[dict[str, Any]] = []
        store = self._catalog.store
        while index < len(readable):
            rtype, fields = readable[index].rtype, readable[index].fields
            scope = rtype.read[actor.role]
            mapping = self._catalog.mappings.of(actor.side, rtype.name)
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
                    cursor = encode_cursor(SnapshotCursor(top, rtype.name, rid, digest))
                    return {"changes": changes, "cursor": cursor, "more": True, "snapshot": True}
            if len(page) < size:
                index, after = index + 1, ""
        return {
            "changes": changes,
            "cursor": encode_cursor(LogCursor(top, digest)),
            "more": await store.log_top() != top,
            "snapshot": True,
        }

    async def _changes_since(
        self, actor: Actor, readable: list[_Selected], size: int, digest: str, after: str
    ) -> dict[str, Any]:
        types = {selected.rtype.name: selected for selected in readable}
        merged: _Merged = {}
        complete: set[tuple[str, str]] = set()  # records that entered the scope: send all
        more = False
        scanned = 0
        while True:
            entries, expired = await read_log(self._catalog.store, after, LOG_CHUNK)
            scanned += len(entries)
            if expired:
                raise SyncError(
                    ErrorCode.RESYNC,
                    "the cursor is older than the retained change log: pull without a cursor",
                )
            for position, blob in entries:
                entry = unpack(blob)
                selected = types.get(entry["type"])
                if entry["kind"] == EntryKind.APPLIED and selected is not None:
                    key = (entry["type"], entry["rid"])
                    if key not in merged and len(merged) >= size:
                        more = True
                        break
                    self._fold(actor, selected, entry, merged, complete)
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
        cursor = encode_cursor(LogCursor(after, digest))
        return {"changes": changes, "cursor": cursor, "more": more}

    def _fold(
        self,
        actor: Actor,
        selected: _Selected,
        entry: dict[str, Any],
        merged: _Merged,
        complete: set[tuple[str, str]],
    ) -> None:
        """Add one applied log entry to a pull's page. An entry that changed
        no field of the classes asked for adds nothing unless it moved the
        record in or out of the reader's scope."""
        rtype = selected.rtype
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
        entering = not before and not entry["created"]
        if key not in merged and not entering and selected.in_classes.isdisjoint(entry["fields"]):
            return
        change = merged.get(key)
        if change is None or change.get("removed"):
            change = merged[key] = {"fields": {}}
            if entering:
                complete.add(key)
        readable = selected.fields
        mapping = self._catalog.mappings.of(actor.side, rtype.name)
        change["fields"].update(
            mapping.outbound({n: pair[1] for n, pair in entry["fields"].items() if n in readable})
        )

    async def _complete(
        self,
        actor: Actor,
        types: dict[str, _Selected],
        merged: _Merged,
        keys: set[tuple[str, str]],
    ) -> None:
        """Fill in every field the reader gets of the records that entered its scope."""
        ordered = sorted(keys)
        stored, _ = await self._catalog.store.load([f"{t}:{rid}" for t, rid in ordered], [])
        for key, found in zip(ordered, stored, strict=True):
            rtype, fields = types[key[0]].rtype, types[key[0]].fields
            state = decode_state(found)
            scope = rtype.read[actor.role]
            if not reaches(rtype, scope, actor, state):
                continue  # it left again since: a later page removes it
            mapping = self._catalog.mappings.of(actor.side, rtype.name)
            values = visible(rtype, mapping, actor, state, fields)
            if values is not None:
                merged[key]["fields"] = {**merged[key]["fields"], **values}  # now's values
