"""Data drift, measured: a phone's digest of its copy against what it should
hold (docs/sync.md, "Data drift"; the wire format docs/protocol.md 3.8).

The :class:`~fieldpush.sync.pull.Puller` calls :class:`DriftCheck` only for a
pull that found nothing new for the reader after its cursor (no change, no
``more``): then the phone's copy at that cursor should be exactly what the
reader may read now, and any difference is drift, not lag.

- :meth:`DriftCheck.compare` (``pull.digest``): per record type of the pull,
  the server's :class:`~fieldpush_client.protocol.Digest` of the records the
  reader should hold (those its read scope reaches, not deleted, their core
  fields it may read, in its names: what a full download gives it) against
  the phone's. The types that differ are answered with the digest of every
  non-empty bucket, so that the phone finds the differing buckets itself.
  A type of more than :data:`MAX_RECORDS` stored records is not compared. A
  server digest is kept per (record type, role, scope) and reused while the
  change log has not moved, so the phones of one team, or of every reader of
  a type, cost one scan per change, not one per pull.
- :meth:`DriftCheck.repair` (``pull.repair``): the phone lists what it holds
  of the buckets that differed; the answer is every record of those buckets
  that it holds differently or not at all (whole), and ``removed`` for those
  it holds but should not. Their number, per type, is the drift: counted in
  ``fieldpush_drift_records_total{type}`` and written to the device registry
  (the type's last drift and when, :meth:`Devices.note_drift
  <fieldpush.backend.base.Devices.note_drift>`; a failed write is skipped).

Both scan the type, as a full download does, so a device is compared at most
once per ``interval_s`` (``sync_drift_interval_s``) on a node: a digest sent
sooner is ignored (``None``: the reply has no ``drift``). A repair is taken
only for the types the device's last comparison found differing, at most
:data:`REPAIRS_PER_TYPE` requests per type and comparison; the others are
ignored too (``None``). So a device costs at most one scan per interval, and
a bounded number after a comparison that differed, whatever it sends.

``fieldpush_devices_drifting`` (:attr:`DriftCheck.drifting`) counts the
devices whose last check on this node found a difference (a digest that
differed, or a repair that found records), of the :data:`REMEMBERED_DEVICES`
checked last. When the repairs after a comparison that differed find no
record at all (the digest differed by a commit made during the check), the
device is cleared. No record is ever changed here.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fieldpush.errors import BackendUnavailable
from fieldpush.metrics import Metrics
from fieldpush.sync.catalog import Catalog
from fieldpush.sync.codec import decode_state
from fieldpush.sync.rules import Actor, reaches
from fieldpush.sync.schema import RecordType
from fieldpush.sync.view import visible
from fieldpush_client.protocol import Digest, DriftReport, Repair, TypeDrift, bucket_of, record_hash

__all__ = ["MAX_RECORDS", "REMEMBERED_DEVICES", "DriftCheck", "DriftWriter", "Readable"]

#: A record type with more stored records than this is not compared.
MAX_RECORDS: Final = 200_000
#: Records read per round trip of a scan.
SCAN_PAGE: Final = 1000
#: Server digests kept (per record type, role and scope).
CACHED_DIGESTS: Final = 1024
#: Devices whose last check this node remembers (the gauge counts among them).
REMEMBERED_DEVICES: Final = 65_536
#: Repair requests a device may make per record type after one comparison.
REPAIRS_PER_TYPE: Final = 32

#: :meth:`fieldpush.backend.base.Devices.note_drift`: user, device, per type
#: the differing records, the time in ms.
DriftWriter = Callable[[str, str, dict[str, int], int], Awaitable[None]]


@dataclass(slots=True)
class _Checked:
    """What a node remembers of a device: when it was last compared, whether
    that (or a repair since) found a difference, and the repairs it may still
    make per record type."""

    at_s: float
    drifting: bool
    repairs: dict[str, int]
    #: Records the repairs since that comparison found.
    found: int = 0


@dataclass(frozen=True, slots=True)
class Readable:
    """A record type of a pull and the core fields of it the reader gets."""

    rtype: RecordType
    fields: frozenset[str]


class DriftCheck:
    """See the module docstring. One per engine. ``now_ms`` is the wall clock."""

    def __init__(
        self,
        catalog: Catalog,
        metrics: Metrics,
        note_drift: DriftWriter,
        *,
        interval_s: float,
        now_ms: Callable[[], int],
        monotonic: Callable[[], float],
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._note = note_drift
        self._interval_s = interval_s
        self._now_ms = now_ms
        self._monotonic = monotonic
        self._digests: OrderedDict[tuple[Any, ...], tuple[str, TypeDrift]] = OrderedDict()
        self._devices: OrderedDict[tuple[str, str], _Checked] = OrderedDict()

    @property
    def drifting(self) -> int:
        """Devices whose last check on this node found a difference."""
        return sum(checked.drifting for checked in self._devices.values())

    async def compare(
        self, actor: Actor, readable: Mapping[str, Readable], digest: Mapping[str, Digest]
    ) -> DriftReport | None:
        """Compare the phone's ``digest`` with what it should hold of every
        type of ``readable`` (a type it did not list: nothing); None when the
        device was compared less than the interval ago."""
        key = (actor.user, actor.device)
        last = self._devices.get(key)
        now_s = self._monotonic()
        if last is not None and now_s - last.at_s < self._interval_s:
            return None
        top = await self._catalog.store.log_top()
        compared: list[str] = []
        differs: dict[str, TypeDrift] = {}
        for name, selected in readable.items():
            ours = await self._digest(actor, selected, top)
            if ours is None:
                continue
            compared.append(name)
            if ours.total != digest.get(name, Digest()):
                differs[name] = ours
        repairs = dict.fromkeys(differs, REPAIRS_PER_TYPE)
        self._remember(key, _Checked(now_s, bool(differs), repairs))
        return DriftReport(tuple(compared), differs)

    async def repair(
        self, actor: Actor, readable: Mapping[str, Readable], repair: Mapping[str, Repair]
    ) -> list[dict[str, Any]] | None:
        """The ``changes`` that make the phone's copy of the listed buckets
        right (see the module docstring), counted and noted as drift; None
        when no listed type may be repaired now. A type not in ``readable``,
        not found differing by the device's last comparison, past its
        repairs, or of more than :data:`MAX_RECORDS` records, is left as it is."""
        checked = self._devices.get((actor.user, actor.device))
        allowed = [
            name
            for name in repair
            if name in readable and checked is not None and checked.repairs.get(name, 0) > 0
        ]
        if not allowed or checked is None:
            return None
        changes: list[dict[str, Any]] = []
        found: dict[str, int] = {}
        for name in allowed:
            asked, selected = repair[name], readable[name]
            checked.repairs[name] -= 1
            held = dict(asked.held)
            before = len(changes)
            try:
                async for rid, values in self._should_hold(actor, selected, asked.buckets):
                    if held.pop(rid, None) != record_hash(rid, values):
                        changes.append({"type": name, "rid": rid, "fields": values})
            except _TooMany:
                del changes[before:]
                continue
            changes.extend(
                {"type": name, "rid": rid, "fields": {}, "removed": True} for rid in held
            )
            found[name] = len(changes) - before
        for name, count in found.items():
            self._metrics.drift_records[name] += count
        checked.found += len(changes)
        checked.drifting = checked.found > 0
        differing = {name: count for name, count in found.items() if count}
        if differing:
            # A failed write: the registry misses this one; the metric has it.
            with contextlib.suppress(BackendUnavailable):
                await self._note(actor.user, actor.device, differing, self._now_ms())
        return changes

    def _remember(self, key: tuple[str, str], checked: _Checked) -> None:
        devices = self._devices
        devices.pop(key, None)
        if len(devices) >= REMEMBERED_DEVICES:
            devices.popitem(last=False)
        devices[key] = checked

    async def _digest(self, actor: Actor, selected: Readable, top: str) -> TypeDrift | None:
        """The server's digest of what ``actor`` should hold of a type (None:
        too many records to compare), from the cache while the log is at ``top``."""
        rtype = selected.rtype
        scope = rtype.read[actor.role]
        key = (
            rtype.name,
            actor.role,
            scope,
            actor.user if scope == "own" else "",
            tuple(sorted(actor.teams)) if scope == "team" else (),
        )
        cached = self._digests.get(key)
        if cached is not None and cached[0] == top:
            self._digests.move_to_end(key)
            return cached[1]
        total = Digest()
        buckets: dict[int, Digest] = {}
        try:
            async for rid, values in self._should_hold(actor, selected, None):
                hashed = record_hash(rid, values)
                total = total.add(hashed)
                bucket = bucket_of(rid)
                buckets[bucket] = buckets.get(bucket, Digest()).add(hashed)
        except _TooMany:
            return None
        ours = TypeDrift(total, buckets)
        if await self._catalog.store.log_top() == top:  # nothing committed meanwhile
            self._digests[key] = (top, ours)
            self._digests.move_to_end(key)
            if len(self._digests) > CACHED_DIGESTS:
                self._digests.popitem(last=False)
        return ours

    async def _should_hold(
        self, actor: Actor, selected: Readable, buckets: frozenset[int] | None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Every record of the type ``actor`` should hold (of ``buckets``
        only, when given), with its values as a full download gives them.
        Raises _TooMany past :data:`MAX_RECORDS` stored records."""
        rtype, fields = selected.rtype, selected.fields
        scope = rtype.read[actor.role]
        mapping = self._catalog.mappings.of(actor.side, rtype.name)
        store = self._catalog.store
        after, scanned = "", 0
        while True:
            page = await store.scan(rtype.name, after, SCAN_PAGE)
            scanned += len(page)
            if scanned > MAX_RECORDS:
                raise _TooMany
            for rid, stored in page:
                if buckets is not None and bucket_of(rid) not in buckets:
                    continue
                state = decode_state(stored)
                if not reaches(rtype, scope, actor, state):
                    continue
                values = visible(rtype, mapping, actor, state, fields)
                if values is not None:
                    yield rid, values
            if len(page) < SCAN_PAGE:
                return
            after = page[-1][0]


class _TooMany(Exception):
    """A record type has more than :data:`MAX_RECORDS` records: not compared."""
