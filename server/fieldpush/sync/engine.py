"""The sync engine: mutations in, changes out (docs/protocol.md section 3, docs/sync.md).

:class:`SyncEngine` wires the parts and is what the session and the HTTP routes call:

- :meth:`SyncEngine.mutate` takes a batch of mutations from one actor and
  returns one result per mutation, in order: judged and committed by
  :class:`~fieldpush.sync.commit.Committer` (idempotent by ``mid``, atomic per
  mutation, compare-and-set across nodes; counted in the metrics by status,
  ``unchanged`` and ``replayed`` apart), then changes of ``realtime``
  fields announced as ``record.changed`` events by
  :class:`~fieldpush.sync.announce.Announcer`, and the clock offsets of a
  phone's stamps reported by :class:`~fieldpush.sync.skew.SkewReport`;
- :attr:`SyncEngine.pull` answers from the change log, or with a full
  download (:meth:`Puller.pull <fieldpush.sync.pull.Puller.pull>`);
- :attr:`SyncEngine.put_record` and :attr:`SyncEngine.feed` are the CRM's
  calls (:class:`~fieldpush.sync.crm.CrmSide`);
- :attr:`SyncEngine.exporter` reads a record type whole, for an export
  (:class:`~fieldpush.sync.export.Exporter`);
- :meth:`SyncEngine.file_reference` finds a reference to a file in a record
  the caller may read, for a download (:mod:`fieldpush.sync.attachments`).

It gets its collaborators through the constructor: the record store, a
publisher, the ack recorder, an event id source, the device registry's
``note_skew``, the settings, the metrics and the uploads (an
:class:`~fieldpush.sync.attachments.UploadLookup`, which file references are
checked against).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from fieldpush.backend.base import RecordStore
from fieldpush.identity.auth import Identity
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.announce import EVENT_KIND, AckRecorder, Announcer, Publisher
from fieldpush.sync.attachments import FileChecker, UploadLookup, readable_reference
from fieldpush.sync.catalog import Catalog
from fieldpush.sync.changelog import Paging
from fieldpush.sync.commit import Committer
from fieldpush.sync.crm import CrmSide
from fieldpush.sync.errors import SyncError
from fieldpush.sync.export import Exporter
from fieldpush.sync.hlc import HybridClock
from fieldpush.sync.mapping import Mappings, Side, load_mappings
from fieldpush.sync.pull import Puller
from fieldpush.sync.rules import Actor
from fieldpush.sync.schema import Schema, load_schema
from fieldpush.sync.skew import SkewReport, SkewWriter
from fieldpush.trail.recorder import AuditRecorder
from fieldpush_client.protocol import ErrorCode, InvalidMutation, Mutation

__all__ = ["SyncEngine", "SyncError", "actor_of", "load_sync_config"]


def load_sync_config(settings: Settings) -> tuple[Schema, Mappings]:
    """The data dictionary and the mappings the settings name; SchemaError
    (a ConfigError) naming file, record, field and problem if either is broken."""
    schema = load_schema(settings.schema_path)
    return schema, load_mappings(settings.mappings_path, schema)


def actor_of(identity: Identity, device: str) -> Actor:
    """Who sends mutations or pulls: the token's user, role and teams, on ``device``."""
    return Actor(identity.user, identity.role, device, frozenset(identity.teams))


class SyncEngine:
    """See the module docstring. One per node. ``clock`` is the server's HLC
    (device ``server:<node_id>``): it stamps the CRM's writes, after every
    phone stamp this node stored and never ahead of its wall clock
    (docs/sync.md, "Clock guarantees")."""

    def __init__(
        self,
        schema: Schema,
        mappings: Mappings,
        *,
        records: RecordStore,
        publisher: Publisher,
        acked: AckRecorder,
        new_event_id: Callable[[], str],
        note_skew: SkewWriter,
        settings: Settings,
        metrics: Metrics,
        audit: AuditRecorder,
        uploads: UploadLookup | None = None,
    ) -> None:
        self.schema = schema
        self.mappings = mappings
        self.clock = HybridClock(f"server:{settings.node_id}")
        self._audit = audit
        self._metrics = metrics
        paging = Paging(settings.sync_page_default, settings.sync_page_max)
        catalog = Catalog(records, schema, mappings)
        self._catalog = catalog
        self._committer = Committer(
            catalog,
            self.clock,
            audit=audit,
            files=FileChecker(uploads) if uploads is not None else None,
        )
        self._skew = SkewReport(note_skew, metrics, skewed_ms=int(settings.sync_max_skew_s * 1000))
        self._announcer = Announcer(
            publisher,
            acked,
            new_event_id,
            mappings,
            deadline_s=lambda kind: settings.ack_deadlines_s.get(
                kind, settings.ack_deadlines_s.get(EVENT_KIND, settings.default_ack_deadline_s)
            ),
        )
        crm = CrmSide(catalog, self.mutate, paging)
        #: A pull's ``changes`` reply: :meth:`Puller.pull <fieldpush.sync.pull.Puller.pull>`.
        self.pull = Puller(catalog, paging).pull
        #: ``PUT /v1/records/{type}/{id}``: :meth:`fieldpush.sync.crm.CrmSide.put_record`.
        self.put_record = crm.put_record
        #: ``GET /v1/changes``: :meth:`fieldpush.sync.crm.CrmSide.feed`.
        self.feed = crm.feed
        #: ``GET /v1/export/{type}``: :class:`fieldpush.sync.export.Exporter`.
        self.exporter = Exporter(catalog)

    async def file_reference(self, actor: Actor, file_id: str) -> tuple[str, dict[str, Any]] | None:
        """The record key ``<type>:<rid>`` and the reference to ``file_id`` of
        a record ``actor`` may read, in a field its role may read, as the
        record is now (None: there is none)."""
        return await readable_reference(self._catalog, actor, file_id)

    def may_read_change(self, role: str, teams: frozenset[str], team: str, data: object) -> bool:
        """Whether a user of ``role`` and ``teams`` may read the ``data`` of a
        ``record.changed`` event on ``records:<team>``: the record type's read
        scope reaches that team and every field in it is readable by the role
        (a ``removed`` event has none: the scope decides). Anything else, a
        malformed ``data`` included: False (docs/sync.md)."""
        if not isinstance(data, dict):
            return False
        rtype = self.schema.types.get(str(data.get("type")))
        fields = {} if data.get("removed") is True else data.get("fields")
        if rtype is None or not isinstance(fields, dict):
            return False
        scope = rtype.read.get(role)
        if not (scope == "all" or (scope == "team" and team in teams)):
            return False
        mapping = self.mappings.of(Side.PHONE, rtype.name)
        readable = {mapping.side_name(name) for name in rtype.readable_fields(role)}
        return readable.issuperset(fields)

    def refuse_batch(self, actor: Actor, reason: ErrorCode, count: int | None) -> None:
        """Record a batch of mutations refused whole, before any of it was
        judged (more than ``sync_max_mutations``, a malformed message): one
        audit entry ``sync.batch``, target ``sync``, outcome
        ``refused:<reason>``, with the number of mutations when it is known."""
        fields = {} if count is None else {"mutations": (None, count)}
        self._audit.record(
            actor=actor.user, role=actor.role, device=actor.device, action="sync.batch",
            target="sync", outcome=f"refused:{reason.value}", fields=fields,
        )  # fmt: skip

    async def mutate(
        self,
        actor: Actor,
        items: Sequence[Mutation | InvalidMutation],
        *,
        idempotent: bool = True,
    ) -> list[dict[str, Any]]:
        """Apply ``items`` in order; one result per item (see the module
        docstring). Raises BackendUnavailable when the store cannot be reached;
        the announcements never do."""
        batch = await self._committer.commit(actor, items, idempotent=idempotent)
        await asyncio.gather(
            *(self._announcer.announce(actor, c) for c in batch.changes),
            self._skew.note(actor, batch.offsets),
        )
        for result, replayed in zip(batch.results, batch.replayed, strict=True):
            self._metrics.mutations[_counted_as(result, replayed=replayed)] += 1
        return batch.results


def _counted_as(result: dict[str, Any], *, replayed: bool) -> str:
    """The ``status`` label of a result in ``fieldpush_mutations_total``: a kept
    result returned again is ``replayed`` (it was counted when judged), an
    applied one that changed nothing ``unchanged``, else its status."""
    if replayed:
        return "replayed"
    return "unchanged" if result.get("unchanged") else str(result["status"])
