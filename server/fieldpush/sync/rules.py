"""The conflict rules, as one pure function: :func:`merge`.

Given a record's stored state, one validated mutation and who sends it,
:func:`merge` decides field by field (docs/protocol.md section 3, docs/sync.md):

- ``mdm``: the CRM (a ``service`` token, side ``crm``) is master: its value is
  taken whatever the stamps say. A phone's edit is not applied: the field is
  ``mdm_owned`` and the edit becomes a *proposal* for the CRM. When a phone
  creates a record, its values for ``mdm`` fields are the initial ones.
- ``lww``: the edit with the greater stamp ``(wall_ms, counter, device)`` wins;
  a losing edit is a ``conflict``. Equal stamps are the same edit: no change.
- ``append`` (list fields): the value is an edit of a log
  (:mod:`fieldpush.sync.appendlog`): the items it adds are kept whatever the
  stamps say, ordered by the stamp of the edit that added them; removal is
  explicit (``{"remove": [...]}``). Never a ``conflict``. A log that would
  grow past the field's ``max_length`` is ``validation`` (nothing changes).
- ``locked``: of the roles that may write the record, only the listed ones
  may edit (``field_locked`` otherwise); between them, ``lww``. The CRM may
  always, on records it may write. The list narrows who of the writers may
  edit the field, never widens it: a role without write access edits nothing.

Record-level checks come first: a deleted or unreadable record is
``not_found``; a readable record the role may not write is ``forbidden``
(whatever the fields); a create the role may not make is ``not_found``
(:func:`_create`). A writer without ``all`` access keeps records where it may
write them: the record's team must be one of its token's teams (on create, and
when an edit changes the team field), and an ``own`` writer cannot give a
record to another user (``forbidden`` for that field).

Fields are independent: two devices editing different fields of one record
both win. A mutation's status is the worst of its fields: ``rejected`` (with
the first reason), else ``conflict``, else ``applied``.

Because ``lww`` keeps, per field, the value of the greatest stamp, and
``append`` keeps every addition at the earliest stamp that added it, any order
of the same edits ends in the same state (tests/sync/test_sync_rules.py checks
it with hypothesis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fieldpush.sync import appendlog
from fieldpush.sync.appendlog import Log
from fieldpush.sync.hlc import Stamp
from fieldpush.sync.mapping import Side
from fieldpush.sync.schema import FieldSpec, RecordType

__all__ = [
    "Actor",
    "Edit",
    "Outcome",
    "Reason",
    "RecordState",
    "Status",
    "merge",
    "reaches",
    "scope_of",
]


class Status(StrEnum):
    """A mutation's status on the wire; ``applied`` and ``conflict`` are also field results."""

    APPLIED = "applied"
    CONFLICT = "conflict"
    REJECTED = "rejected"


class Reason(StrEnum):
    """Why a mutation or one of its fields was refused, on the wire."""

    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    VALIDATION = "validation"
    MDM_OWNED = "mdm_owned"
    FIELD_LOCKED = "field_locked"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who sends a mutation. ``side`` is ``crm`` for service tokens, else ``phone``."""

    user: str
    role: str
    device: str
    teams: frozenset[str] = frozenset()

    @property
    def side(self) -> Side:
        return Side.CRM if self.role == "service" else Side.PHONE


@dataclass(slots=True)
class RecordState:
    """A stored record: per field ``(value, stamp of the edit that set it)``;
    ``deleted`` is the stamp of its deletion (a tombstone); ``version`` counts
    its commits (the compare-and-set token of the record store).

    An ``append`` field's value is the plain list of its items, as every
    reader sees it (None once cleared); its per-item stamps are in ``logs``
    (a :class:`~fieldpush.sync.appendlog.Log` whose items are the value, in
    order), and its stamp is that of the last edit that changed it. A log
    without ``logs`` (stored before the rule existed) is read as its items
    each stamped with the field's stamp (:func:`appendlog.log_of`)."""

    fields: dict[str, tuple[Any, Stamp]] = field(default_factory=dict)
    deleted: Stamp | None = None
    version: int = 0
    logs: dict[str, Log] = field(default_factory=dict)

    def value(self, name: str | None) -> Any:
        if name is None or name not in self.fields:
            return None
        return self.fields[name][0]

    def values(self) -> dict[str, Any]:
        return {name: value for name, (value, _) in self.fields.items()}

    def copy(self) -> RecordState:
        return RecordState(dict(self.fields), self.deleted, self.version, dict(self.logs))

    def log(self, name: str) -> Log:
        """The entries of ``append`` field ``name`` (empty when it has none)."""
        value, stamp = self.fields.get(name, (None, None))
        return appendlog.log_of(value, stamp, self.logs.get(name))


@dataclass(frozen=True, slots=True)
class Edit:
    """One mutation after mapping and validation: schema names and values;
    ``fields`` None deletes the record. ``stamp`` is already clamped."""

    fields: dict[str, Any] | None
    stamp: Stamp


@dataclass(slots=True)
class Outcome:
    """What :func:`merge` decided. ``state`` is the new state when anything
    changed (None: nothing to write); ``changed`` and ``proposed`` map field
    names to ``(old, new)`` values."""

    status: Status
    reason: Reason | None = None
    #: Per field its result: applied, conflict, or why it was refused.
    fields: dict[str, Status | Reason] = field(default_factory=dict)
    state: RecordState | None = None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    proposed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    created: bool = False
    deleted: bool = False
    #: Why a field is ``validation`` when only the merge can tell (a log full).
    message: str | None = None

    @property
    def unchanged(self) -> bool:
        """Applied, but no stored value differs from before (the values sent
        equal the stored ones; stamps may still advance): no change-log entry,
        no announcement, ``"unchanged": true`` on the wire."""
        return self.status == Status.APPLIED and not (
            self.changed or self.proposed or self.created or self.deleted
        )


def _refused(reason: Reason) -> Outcome:
    return Outcome(Status.REJECTED, reason)


def scope_of(rtype: RecordType, state: RecordState | None) -> list[Any]:
    """``[owner, team]`` of a record (both None when it does not exist)."""
    if state is None or state.deleted is not None:
        return [None, None]
    return [state.value(rtype.scope), state.value(rtype.team)]


def reaches(rtype: RecordType, scope: str | None, actor: Actor, state: RecordState | None) -> bool:
    """Whether ``scope`` (``own``/``team``/``all``) of ``actor`` covers the record."""
    return rtype.reaches(scope, actor.user, actor.teams, *scope_of(rtype, state))


def merge(rtype: RecordType, state: RecordState | None, edit: Edit, actor: Actor) -> Outcome:
    """Apply ``edit`` by ``actor`` to a record of ``rtype`` stored as ``state``
    (None: it does not exist). Pure: ``state`` is not modified."""
    if state is None or (state.deleted is not None and actor.side == Side.CRM):
        return _create(rtype, edit, actor, state.version if state else 0)
    if state.deleted is not None:
        return _refused(Reason.NOT_FOUND)
    if not reaches(rtype, rtype.read.get(actor.role), actor, state):
        return _refused(Reason.NOT_FOUND)
    write_scope = rtype.write.get(actor.role)
    writable = reaches(rtype, write_scope, actor, state)
    if edit.fields is None:
        if actor.role in rtype.delete and writable:
            new = state.copy()
            new.deleted = edit.stamp
            new.fields, new.logs = {}, {}
            old = state.values()
            return Outcome(
                Status.APPLIED,
                state=new,
                changed={name: (value, None) for name, value in old.items()},
                deleted=True,
            )
        return _refused(Reason.FORBIDDEN)
    if not writable:  # it reads the record: no need to hide it
        return _refused(Reason.FORBIDDEN)
    new = state.copy()
    outcome = Outcome(Status.APPLIED)
    touched = False
    for name, value in edit.fields.items():
        spec = rtype.fields[name]
        old_value, old_stamp = state.fields.get(name, (None, None))
        if spec.rule == "mdm" and actor.side != Side.CRM:
            result: Status | Reason = Reason.MDM_OWNED
            if value != old_value:
                outcome.proposed[name] = (old_value, value)
        elif spec.rule == "locked" and actor.side != Side.CRM and actor.role not in spec.roles:
            result = Reason.FIELD_LOCKED
        elif value != old_value and not _stays_in_scope(rtype, write_scope, actor, name, value):
            result = Reason.FORBIDDEN
        elif spec.rule == "append":
            result = _append(spec, state, new, edit.stamp, value, outcome)
            touched = touched or name in outcome.changed
        elif spec.rule == "mdm" or old_stamp is None or edit.stamp > old_stamp:
            result = Status.APPLIED
            new.fields[name] = (value, edit.stamp)
            touched = True
            if value != old_value or name not in state.fields:
                outcome.changed[name] = (old_value, value)
        elif edit.stamp == old_stamp:
            result = Status.APPLIED  # the same edit again: nothing changes
        else:
            result = Status.CONFLICT
        outcome.fields[name] = result
    return _conclude(outcome, new if touched else None)


def _append(
    spec: FieldSpec,
    state: RecordState,
    new: RecordState,
    stamp: Stamp,
    value: dict[str, list[Any]] | None,
    outcome: Outcome,
) -> Status | Reason:
    """Merge the log edit ``value`` (None: clear the log) of ``append`` field
    ``spec`` into ``new``: ``applied``, or ``validation`` (with
    ``outcome.message``) when the log would outgrow ``max_length``."""
    name = spec.name
    before = state.log(name)
    if value is None:  # cleared
        if state.value(name) is not None:
            new.fields[name], new.logs[name] = (None, stamp), appendlog.EMPTY
            outcome.changed[name] = (state.value(name), None)
        return Status.APPLIED
    log = appendlog.apply(before, value, stamp)
    if spec.max_length is not None and len(log) > spec.max_length:
        outcome.message = f"{name} would have more than {spec.max_length} items"
        return Reason.VALIDATION
    if log is not before:
        _set_log(new, name, log, stamp)
        outcome.changed[name] = (state.value(name), new.value(name))
    return Status.APPLIED


def _set_log(state: RecordState, name: str, log: Log, stamp: Stamp) -> None:
    """Store ``log`` as field ``name`` of ``state``: its items as the value."""
    state.fields[name] = (log.items(), stamp)
    state.logs[name] = log


def _stays_in_scope(
    rtype: RecordType, scope: str | None, actor: Actor, name: str, value: Any
) -> bool:
    """Whether setting field ``name`` to ``value`` keeps the record where
    ``actor`` (write scope ``scope``) may write it: a writer without ``all``
    access keeps the team one of its teams, an ``own`` writer the record its own.
    The CRM is the master: it may move any record."""
    if actor.side == Side.CRM or scope == "all":
        return True
    if name == rtype.team:
        return value in actor.teams
    if name == rtype.scope and scope == "own":
        return bool(value == actor.user)
    return True


def _create(rtype: RecordType, edit: Edit, actor: Actor, version: int) -> Outcome:
    """A mutation of a record that does not exist: a create, for the roles in
    ``create`` that may write records of the type. Every refusal is
    ``not_found``, as for a record of others that exists, so that no answer
    tells whether an id is in use; only an actor who may read every record of
    the type (read scope ``all``, or the CRM) learns of missing required fields.
    The created record must be within the creator's write scope and, unless it
    writes ``all``, in one of its teams (the token's one team when not given)."""
    scope = rtype.write.get(actor.role)
    if edit.fields is None or actor.role not in rtype.create or scope is None:
        return _refused(Reason.NOT_FOUND)
    values = dict(edit.fields)
    if values.get(rtype.scope) is None and scope == "own":
        values[rtype.scope] = actor.user
    if rtype.team is not None and values.get(rtype.team) is None and len(actor.teams) == 1:
        values[rtype.team] = next(iter(actor.teams))
    missing = [
        name for name, spec in rtype.fields.items() if spec.required and values.get(name) is None
    ]
    if missing:
        if actor.side != Side.CRM and rtype.read.get(actor.role) != "all":
            return _refused(Reason.NOT_FOUND)
        return Outcome(
            Status.REJECTED, Reason.VALIDATION, dict.fromkeys(missing, Reason.VALIDATION)
        )
    new = RecordState(version=version)
    outcome = Outcome(Status.APPLIED, created=True)
    for name, value in values.items():
        spec = rtype.fields[name]
        if spec.rule == "locked" and actor.side != Side.CRM and actor.role not in spec.roles:
            outcome.fields[name] = Reason.FIELD_LOCKED
            continue
        outcome.fields[name] = Status.APPLIED
        if spec.rule == "append" and value is not None:
            _set_log(new, name, appendlog.apply(appendlog.EMPTY, value, edit.stamp), edit.stamp)
        else:
            new.fields[name] = (value, edit.stamp)
        if new.value(name) is not None:
            outcome.changed[name] = (None, new.value(name))
    if actor.side != Side.CRM and not (
        reaches(rtype, scope, actor, new)
        and (scope == "all" or rtype.team is None or new.value(rtype.team) in actor.teams)
    ):
        return _refused(Reason.NOT_FOUND)
    return _conclude(outcome, new)


def _conclude(outcome: Outcome, new: RecordState | None) -> Outcome:
    """Set the status from the field results; keep ``new`` as the state to write."""
    results = list(outcome.fields.values())
    reasons = [r for r in results if isinstance(r, Reason)]
    if reasons:
        outcome.status, outcome.reason = Status.REJECTED, reasons[0]
    elif Status.CONFLICT in results:
        outcome.status = Status.CONFLICT
    outcome.state = new
    return outcome
