"""A mutate batch judged and committed (steps 1 to 3 of :mod:`fieldpush.sync.engine`).

:meth:`Committer.commit` takes the mutations of one actor and returns one
result per mutation, in order, and the changes that were applied:

1. one round trip loads the records the batch touches and the results kept
   for its ``mid``\\ s (a known ``mid`` returns its first result, nothing else);
2. each mutation is mapped (the actor's side), validated by the schema,
   stamped (a phone's HLC, clamped to the server's wall clock when the batch
   arrived; the server's clock for the CRM) and merged by
   :func:`fieldpush.sync.rules.merge` against the record as the earlier
   mutations of the batch left it; an applied mutation that changes no stored
   value (:attr:`~fieldpush.sync.rules.Outcome.unchanged`) answers
   ``"unchanged": true`` and writes no change-log entry;
3. one round trip commits the batch: per mutation, atomically, the record
   (compare-and-set on its version), the result and the change-log entries.
   A mutation whose record changed meanwhile (another node) is judged again
   against the new state, with the ones after it on that record, up to
   :data:`MAX_ATTEMPTS` times (then BackendUnavailable: the client retries).

The server's clock observes a phone's stamp only once the store has taken a
record state that carries it (a refused, conflicting or replayed mutation is
never observed), and only as clamped: so the CRM's next write is stamped
after every stored edit, yet never ahead of the server's wall clock
(docs/sync.md, "Clock guarantees"). :attr:`Batch.offsets` tells how far each
judged phone stamp was from the server's clock, for the skew report.

Each mutation judged here (not a replay of a kept result) is one audit entry
(:class:`~fieldpush.trail.recorder.AuditRecorder`), recorded once its result
is final: action ``sync.write`` (``sync.delete`` for a deletion), target
``<type>/<rid>``, outcome ``applied``, ``conflict`` or ``rejected``, with
``:<reason>`` when there is one, and per field the mutation sent ``[old,
new]``: the stored value before and the one it set, or, where it was not
applied, the one it tried to set. The batch is refused before anything is
judged when the trail cannot take entries (``AuditBacklogged``).

A mutation that sets a file reference (a ``file`` field, a list of files)
has it checked before it is judged, by the
:class:`~fieldpush.sync.attachments.FileChecker` the engine gives (the upload
exists, is complete, is the sender's, matches the reference and its content
type), against the record as loaded; a failure refuses the mutation with
``validation`` and the checker's message, and nothing is written but the
result. Without a checker every new reference is refused. The write of an
applied mutation indexes the file ids its changed fields now reference to the
record (:attr:`~fieldpush.backend.base.RecordWrite.files`), for downloads.

Nothing is announced here: the caller publishes the applied changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fieldpush.backend.base import Applied, RecordWrite, Replayed, Stale
from fieldpush.errors import BackendUnavailable
from fieldpush.logs import shown
from fieldpush.sync.attachments import FileChecker, stored_files
from fieldpush.sync.catalog import Catalog
from fieldpush.sync.codec import EntryKind, decode_state, encode_state, pack, unpack
from fieldpush.sync.hlc import HybridClock, Stamp, clamp
from fieldpush.sync.mapping import Side, TypeMapping
from fieldpush.sync.rules import (
    Actor,
    Edit,
    Outcome,
    Reason,
    RecordState,
    Status,
    merge,
    scope_of,
)
from fieldpush.sync.schema import InvalidValue, RecordType
from fieldpush.sync.view import visible
from fieldpush.trail.recorder import AuditRecorder
from fieldpush_client.protocol import InvalidMutation, Mutation

__all__ = ["MAX_ATTEMPTS", "Batch", "Change", "Committer"]

#: How often a batch is judged again when other nodes keep changing its records.
MAX_ATTEMPTS = 8

#: Reasons whose result carries no ``record``: the actor may not see it, or
#: the mutation was not about its values.
_NO_RECORD = frozenset({Reason.FORBIDDEN, Reason.NOT_FOUND, Reason.VALIDATION})


@dataclass(frozen=True, slots=True)
class Change:
    """A committed mutation of record ``rid`` of ``rtype``: what :func:`merge` decided."""

    rtype: RecordType
    rid: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Batch:
    """A committed batch: one result per mutation, in order, and the changes it
    applied (replays and refusals apply none). ``replayed[i]`` is True when
    result ``i`` is a kept one, returned for a ``mid`` judged before."""

    results: list[dict[str, Any]]
    changes: list[Change]
    replayed: list[bool]
    #: Per phone mutation judged (not replayed) with a stamp: its ``wall_ms``
    #: as sent minus the server's wall clock when the batch arrived.
    offsets: list[int]


@dataclass(frozen=True, slots=True)
class _Plan:
    """One mutation judged: what to write, what to answer, what it changes."""

    write: RecordWrite
    result: dict[str, Any]
    change: Change | None = None
    #: The audit entry's target and fields (``{name: (old, new)}``).
    target: str = ""
    fields: dict[str, tuple[object, object]] | None = None
    #: A phone's stamp (clamped) and its offset as sent; None: no stamp was judged.
    stamp: Stamp | None = None
    offset: int | None = None


class Committer:
    """See the module docstring. ``clock`` stamps the CRM's edits and observes
    every phone's stored stamp."""

    def __init__(
        self,
        catalog: Catalog,
        clock: HybridClock,
        *,
        audit: AuditRecorder,
        files: FileChecker | None = None,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._audit = audit
        self._files = files

    async def commit(
        self, actor: Actor, items: Sequence[Mutation | InvalidMutation], *, idempotent: bool
    ) -> Batch:
        """Judge and commit ``items`` (idempotent by ``mid`` unless told not to).
        Raises BackendUnavailable when the store cannot be reached."""
        self._audit.require()
        received_ms = self._clock.wall_ms()
        store = self._catalog.store
        keys: list[str | None] = [
            _result_key(actor, item.mid) if idempotent else None for item in items
        ]
        record_keys = sorted({f"{m.type}:{m.rid}" for m in items if isinstance(m, Mutation)})
        stored, kept = await store.load(record_keys, [key for key in keys if key is not None])
        states = {key: decode_state(found) for key, found in zip(record_keys, stored, strict=True)}
        results: list[dict[str, Any] | None] = (
            [unpack(blob) if blob is not None else None for blob in kept]
            if idempotent
            else [None] * len(items)
        )
        todo = [i for i, result in enumerate(results) if result is None]
        replayed = [result is not None for result in results]
        problems = {i: await self._file_problem(actor, items[i], states) for i in todo}
        judged: dict[int, _Plan] = {}
        changes: list[Change] = []
        for _ in range(MAX_ATTEMPTS):
            plans = [
                self._plan(actor, items[i], keys[i], states, received_ms, problems[i]) for i in todo
            ]
            statuses = await store.commit([plan.write for plan in plans])
            retry, stale = [], set()
            for i, plan, status in zip(todo, plans, statuses, strict=True):
                match status:
                    case Applied():
                        results[i] = plan.result
                        judged[i] = plan
                        if plan.change is not None:
                            changes.append(plan.change)
                        if plan.stamp is not None and plan.write.blob:
                            self._clock.observe(plan.stamp)  # stored: the CRM writes after it
                        continue
                    case Stale():
                        retry.append(i)
                    case Replayed(result=kept_result):  # a concurrent replay of the same mid
                        results[i] = unpack(kept_result)
                        replayed[i] = True
                if plan.write.record is not None:
                    stale.add(plan.write.record)
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
        answered = [result for result in results if result is not None]
        assert len(answered) == len(items), "every mutation has its result"
        offsets: list[int] = []
        for i in sorted(judged):
            plan = judged[i]
            self._record(actor, items[i], plan)
            if plan.offset is not None:
                offsets.append(plan.offset)
        return Batch(answered, changes, replayed, offsets)

    def _record(self, actor: Actor, item: Mutation | InvalidMutation, plan: _Plan) -> None:
        """The audit entry of one judged mutation (module docstring)."""
        result = plan.result
        outcome = str(result["status"])
        if result.get("reason") is not None:
            outcome += f":{result['reason']}"
        elif result.get("unchanged"):
            outcome += ":unchanged"  # applied, and no stored value changed
        deletion = isinstance(item, Mutation) and item.fields is None
        self._audit.record(
            actor=actor.user, role=actor.role, device=actor.device,
            action="sync.delete" if deletion else "sync.write",
            target=plan.target, fields=plan.fields, outcome=outcome,
        )  # fmt: skip

    async def _file_problem(
        self,
        actor: Actor,
        item: Mutation | InvalidMutation,
        states: dict[str, RecordState | None],
    ) -> str | None:
        """What is wrong with the first file reference ``item`` sets that the
        record does not hold yet, in the sender's names; None when there is
        nothing wrong, or nothing to check (an invalid mutation is refused by
        :meth:`_plan`)."""
        if not isinstance(item, Mutation) or item.fields is None:
            return None
        rtype = self._catalog.schema.types.get(item.type)
        if rtype is None or not rtype.file_fields:
            return None
        mapping = self._catalog.mappings.of(actor.side, rtype.name)
        try:
            fields = _checked(rtype, mapping, item.fields)
        except InvalidValue:
            return None
        held = states.get(f"{rtype.name}:{item.rid}")
        for name in sorted(rtype.file_fields & fields.keys()):
            spec = rtype.fields[name]
            for ref in spec.files(fields[name]):
                if self._files is None:
                    problem: str | None = f"{name}: this server takes no file references"
                else:
                    problem = await self._files.problem(actor.user, spec, ref, held)
                if problem is not None:
                    return _sender_named(mapping, name, problem)
        return None

    def _plan(
        self,
        actor: Actor,
        item: Mutation | InvalidMutation,
        result_key: str | None,
        states: dict[str, RecordState | None],
        received_ms: int,
        file_problem: str | None,
    ) -> _Plan:
        def refuse(message: str) -> _Plan:
            result = {
                "mid": item.mid,
                "status": Status.REJECTED,
                "reason": Reason.VALIDATION,
                "message": message,
            }
            return _Plan(RecordWrite(result_key, pack(result)), result, target=target)

        if isinstance(item, InvalidMutation):
            raw_type, raw_rid = item.item.get("type"), item.item.get("rid")
            target = f"{str(raw_type)[:64]}/{str(raw_rid)[:128]}"
            return refuse(item.message)
        target = f"{item.type}/{item.rid}"
        rtype = self._catalog.schema.types.get(item.type)
        if rtype is None:
            return refuse(f"unknown record type {item.type!r}")
        mapping = self._catalog.mappings.of(actor.side, rtype.name)
        fields = None
        if item.fields is not None:
            try:
                fields = _checked(rtype, mapping, item.fields)
            except InvalidValue as exc:
                return refuse(str(exc))
        if file_problem is not None:
            return refuse(file_problem)
        key = f"{rtype.name}:{item.rid}"
        state = states.get(key)
        phone: Stamp | None = None
        if actor.side == Side.CRM:
            stamp = self._clock.now()
        else:
            stamp = phone = clamp(Stamp(item.hlc[0], item.hlc[1], actor.device), received_ms)
        outcome = merge(rtype, state, Edit(fields, stamp), actor)
        result: dict[str, Any] = {"mid": item.mid, "status": outcome.status}
        if outcome.unchanged:
            result["unchanged"] = True
        if outcome.reason is not None:
            result["reason"] = outcome.reason
        if outcome.reason == Reason.VALIDATION and outcome.message is not None:
            result["message"] = outcome.message  # a log full
        elif outcome.reason == Reason.VALIDATION:  # required fields missing on create
            missing = sorted(mapping.side_name(n) for n in outcome.fields)
            result["message"] = f"{rtype.name} needs the required field(s) {missing}"
        if outcome.fields:
            result["fields"] = {mapping.side_name(n): r for n, r in outcome.fields.items()}
        after = outcome.state or state
        if outcome.status != Status.APPLIED and outcome.reason not in _NO_RECORD:
            result["record"] = visible(rtype, mapping, actor, after)
        expected = state.version if state is not None else 0
        blob = b""
        if outcome.state is not None:
            outcome.state.version = expected + 1
            states[key] = outcome.state
            blob = encode_state(outcome.state)
        entries = self._log_entries(actor, rtype, item, state, outcome)
        files = tuple(
            sorted(
                {
                    ref["id"]
                    for name, (_, new) in outcome.changed.items()
                    if name in rtype.file_fields
                    for ref in stored_files(rtype.fields[name], new)
                }
            )
        )
        write = RecordWrite(result_key, pack(result), key, expected, blob, entries, files)
        tried: dict[str, tuple[object, object]] = {
            name: (state.value(name) if state is not None else None, value)
            for name, value in (fields or {}).items()
        }
        tried.update(outcome.changed)
        offset = None if phone is None else item.hlc[0] - received_ms
        change = Change(rtype, item.rid, outcome)
        return _Plan(write, result, change, target, tried, phone, offset)

    def _log_entries(
        self,
        actor: Actor,
        rtype: RecordType,
        item: Mutation,
        before: RecordState | None,
        outcome: Outcome,
    ) -> tuple[bytes, ...]:
        """The change-log entries of one mutation: an ``applied`` one for what it
        changed, a ``proposal`` for what it proposed to the CRM (``mdm`` fields)."""
        base = {
            "type": rtype.name,
            "rid": item.rid,
            "actor": actor.user,
            "role": actor.role,
            "device": actor.device,
            "mid": item.mid,
            "ts": self._clock.wall_ms(),
            "prev": scope_of(rtype, before),
        }
        entries = []
        if outcome.changed or outcome.created or outcome.deleted:
            entries.append(
                pack(
                    {
                        **base,
                        "kind": EntryKind.APPLIED,
                        "fields": {n: list(pair) for n, pair in outcome.changed.items()},
                        "scope": scope_of(rtype, outcome.state),
                        "created": outcome.created,
                        "deleted": outcome.deleted,
                    }
                )
            )
        if outcome.proposed:
            entries.append(
                pack(
                    {
                        **base,
                        "kind": EntryKind.PROPOSAL,
                        "fields": {n: list(pair) for n, pair in outcome.proposed.items()},
                        "scope": base["prev"],
                    }
                )
            )
        return tuple(entries)


def _result_key(actor: Actor, mid: str) -> str:
    """The name of a mutation's kept result: its user, device and ``mid``."""
    return f"{len(actor.user)}:{actor.user}:{len(actor.device)}:{actor.device}:{mid}"


def _checked(rtype: RecordType, mapping: TypeMapping, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` in the schema's names and stored values; InvalidValue naming
    the first unknown or invalid field by the sender's name."""
    mapped = mapping.inbound(fields)
    unknown = mapped.keys() - rtype.fields.keys()
    if unknown:
        names = ", ".join(shown(name) for name in sorted(unknown)[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InvalidValue(f"{rtype.name} has no field(s) {names}{more}")
    checked = {}
    for name, value in mapped.items():
        try:
            checked[name] = rtype.fields[name].check(value)
        except InvalidValue as exc:
            raise InvalidValue(_sender_named(mapping, name, str(exc))) from None
    return checked


def _sender_named(mapping: TypeMapping, name: str, message: str) -> str:
    """``message`` about field ``name``, starting with the sender's name of it."""
    side_name = mapping.side_name(name)
    if side_name != name and message.startswith(name):
        return side_name + message[len(name) :]
    return message
