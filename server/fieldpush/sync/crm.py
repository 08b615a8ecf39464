"""The CRM's side of sync: writing a record and reading the change feed.

:meth:`CrmSide.put_record` is ``PUT /v1/records/{type}/{id}``: one mutation,
not idempotent by ``mid`` (a PUT is), stamped by the server's clock, through
the same commit and announcements as a phone's. :meth:`CrmSide.feed` is
``GET /v1/changes``: the change log as the CRM sees it, every applied change
and every refused proposal, with old and new values, actor and device, in the
CRM's names, each with the cursor that continues after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fieldpush.sync.catalog import Catalog
from fieldpush.sync.changelog import Paging, read_log
from fieldpush.sync.codec import (
    ALL_TYPES,
    LogCursor,
    decode_cursor,
    decode_state,
    encode_cursor,
    unpack,
)
from fieldpush.sync.errors import SyncError
from fieldpush.sync.mapping import Side
from fieldpush.sync.rules import Actor, Reason, Status
from fieldpush.sync.view import visible
from fieldpush_client.protocol import ErrorCode, InvalidMutation, Mutation

__all__ = ["CrmSide", "Mutator"]


class Mutator(Protocol):
    """Applies a batch of mutations (:meth:`fieldpush.sync.engine.SyncEngine.mutate`)."""

    async def __call__(
        self,
        actor: Actor,
        items: Sequence[Mutation | InvalidMutation],
        *,
        idempotent: bool = True,
    ) -> list[dict[str, Any]]:
        """One result per item, in order."""


class CrmSide:
    """See the module docstring."""

    def __init__(self, catalog: Catalog, mutate: Mutator, paging: Paging) -> None:
        self._catalog = catalog
        self._mutate = mutate
        self._paging = paging

    async def put_record(
        self, actor: Actor, record_type: str, rid: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """The CRM writes a record: its values after the write, in the CRM's
        names. SyncError if refused (``not_found``: no such type; ``invalid``:
        a value or a required field; ``forbidden``: any other reason)."""
        rtype = self._catalog.schema.types.get(record_type)
        if rtype is None:
            raise SyncError(ErrorCode.NOT_FOUND, f"no record type {record_type!r}")
        item = Mutation(mid="", type=record_type, rid=rid, fields=fields, hlc=(0, 0))
        (result,) = await self._mutate(actor, [item], idempotent=False)
        if result["status"] == Status.REJECTED:
            invalid = result["reason"] == Reason.VALIDATION
            code = ErrorCode.INVALID if invalid else ErrorCode.FORBIDDEN
            raise SyncError(code, result.get("message") or f"refused: {result['reason']}")
        stored, _ = await self._catalog.store.load([f"{record_type}:{rid}"], [])
        mapping = self._catalog.mappings.of(actor.side, record_type)
        values = visible(rtype, mapping, actor, decode_state(stored[0]))
        return {"type": record_type, "rid": rid, "fields": values or {}}

    async def feed(self, cursor: str | None, limit: int | None) -> dict[str, Any]:
        """Applied changes and proposals after ``cursor`` (none: from the oldest
        retained), in order. SyncError ``bad_request`` for a cursor not from
        the feed, ``resync`` for one older than the retained log."""
        after = None
        if cursor is not None:
            decoded = decode_cursor(cursor)
            if not isinstance(decoded, LogCursor) or decoded.types not in (None, ALL_TYPES):
                raise SyncError(ErrorCode.BAD_REQUEST, "invalid cursor: use one from /v1/changes")
            after = decoded.position
        size = self._paging.size(limit)
        entries, expired = await read_log(self._catalog.store, after, size)
        if expired:
            raise SyncError(
                ErrorCode.RESYNC,
                "the cursor is older than the retained change log: start again without a cursor",
            )
        changes = []
        for position, blob in entries:
            entry = unpack(blob)
            mapping = self._catalog.mappings.of(Side.CRM, entry["type"])
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
                "cursor": encode_cursor(LogCursor(position)),
            }
            if entry.get("deleted"):
                change["deleted"] = True
            changes.append(change)
            after = position
        if after is None:  # an empty log
            after = await self._catalog.store.log_top()
        return {
            "changes": changes,
            "cursor": encode_cursor(LogCursor(after)),
            "more": len(entries) == size,
        }
