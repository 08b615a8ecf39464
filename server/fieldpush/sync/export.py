"""An export of one record type: its live records as a reader sees them, page by page.

:meth:`Exporter.plan` checks the request (the type exists, the reader's role
reads it) and fixes the columns: the fields the role may read, in the
schema's order, named as ``side`` names them. :meth:`Exporter.rows` then
yields ``(rid, values)`` for every live record within the role's read scope,
in id order, reading :data:`PAGE` records per round trip, so memory stays
bounded whatever the number of records.

An export is not a point-in-time snapshot: each record is as it was when its
page was read. :attr:`ExportPlan.as_of` is the change log's position when the
export began, so a reader of the change feed can tell which later changes an
export may or may not contain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from fieldpush.sync.catalog import Catalog
from fieldpush.sync.codec import decode_state
from fieldpush.sync.errors import SyncError
from fieldpush.sync.mapping import Side, TypeMapping
from fieldpush.sync.rules import Actor, reaches
from fieldpush.sync.schema import RecordType
from fieldpush_client.protocol import ErrorCode

__all__ = ["PAGE", "ExportPlan", "Exporter"]

#: Records read per round trip to the store.
PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What one export sends: ``columns`` are the side's names of the readable
    fields, in the schema's order; ``as_of`` the change log's position at the start."""

    rtype: RecordType
    side: Side
    mapping: TypeMapping
    scope: str
    readable: frozenset[str]
    columns: tuple[str, ...]
    as_of: str


class Exporter:
    """See the module docstring."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def plan(self, actor: Actor, record_type: str, side: Side) -> ExportPlan:
        """The plan of an export of ``record_type`` by ``actor`` in ``side``'s
        names. SyncError ``not_found`` (no such type) or ``forbidden`` (the
        actor's role does not read it)."""
        rtype = self._catalog.schema.types.get(record_type)
        if rtype is None:
            raise SyncError(ErrorCode.NOT_FOUND, f"no record type {record_type!r}")
        scope = rtype.read.get(actor.role)
        if scope is None:
            raise SyncError(ErrorCode.FORBIDDEN, f"role {actor.role!r} does not read {rtype.name}")
        mapping = self._catalog.mappings.of(side, rtype.name)
        readable = rtype.readable_fields(actor.role)
        columns = tuple(mapping.side_name(name) for name in rtype.fields if name in readable)
        as_of = await self._catalog.store.log_top()
        return ExportPlan(rtype, side, mapping, scope, readable, columns, as_of)

    async def rows(
        self, actor: Actor, plan: ExportPlan
    ) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """The plan's records, a page at a time: ``(rid, values)`` with the
        values of the plan's columns the record has (a field never set is
        absent). Deleted records and records outside the actor's scope are
        left out. Raises BackendUnavailable if the store cannot be reached."""
        after = ""
        while True:
            page = await self._catalog.store.scan(plan.rtype.name, after, PAGE)
            rows = []
            for rid, stored in page:
                after = rid
                state = decode_state(stored)
                if state is None or state.deleted is not None:
                    continue
                if not reaches(plan.rtype, plan.scope, actor, state):
                    continue
                values = {n: v for n, v in state.values().items() if n in plan.readable}
                rows.append((rid, plan.mapping.outbound(values)))
            if rows:
                yield rows
            if len(page) < PAGE:
                return
