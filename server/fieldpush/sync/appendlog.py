"""The ``append`` rule for list fields (service logs, call notes). Pure.

A mutation's value for an ``append`` field is an *edit of the log*, checked
by :meth:`FieldSpec.check <fieldpush.sync.schema.FieldSpec.check>` into
``{"add": [...], "remove": [...]}`` (docs/sync.md, "Logs that merge": a plain
list sent means "these items must be present"); :func:`apply` merges it into
the stored log. A :class:`Log` holds each item with the stamp and position
(in its mutation) of the edit that added it, as the rows the record store
keeps. Readers never see it: the record's value is the plain list of items in
entry order (:meth:`Log.items`).

Guarantees of :func:`apply`:

- an item is in the log at most once (items are compared by value, a
  ``file`` reference by its keys and values: :func:`item_key`);
- entries are ordered by ``(stamp, position)``; an item added by several
  edits takes the earliest of them, so any order of the same additions ends in
  the same log, in the same order (tests/sync/test_sync_rules.py);
- a removal takes out the items present when it is applied; removing an item
  that is not there changes nothing (two devices striking the same entry both
  succeed). An addition stamped before a removal but arriving after it adds
  the item again: removals are not remembered (no tombstones to grow);
- it returns the log it was given when nothing changes.

Cost: a log stays in its stored rows; only an addition that must be ordered
before the newest entry (or adds an item already there) decodes it into
:class:`Entry` tuples and sorts. Removals and additions after the newest entry
(the common case) filter and append rows (``python -m bench.logs``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fieldpush.sync.hlc import Stamp

__all__ = ["EMPTY", "Entry", "Log", "apply", "item_key", "log_of"]

#: A log entry as stored: ``[item, wall_ms, counter, device, position]``.
Row = list[Any]


class Entry(NamedTuple):
    """One item of a log and when it was added. Entries sort as tuples: by
    ``(stamp, position)``, which only one item has (one position of one edit),
    unless a device stamps two edits alike; then by item."""

    stamp: Stamp
    position: int
    item: Any


class Log:
    """A log: its entries in order, held as the stored rows (see the module
    docstring). Equal when the rows are."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    @classmethod
    def of(cls, entries: tuple[Entry, ...]) -> Log:
        return cls([[entry.item, *entry.stamp, entry.position] for entry in entries])

    def rows(self) -> list[Row]:
        """The stored form (do not modify)."""
        return self._rows

    def entries(self) -> tuple[Entry, ...]:
        return tuple(Entry(Stamp(r[1], r[2], r[3]), r[4], r[0]) for r in self._rows)

    def items(self) -> list[Any]:
        """What readers see: the items, in entry order."""
        return [row[0] for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Log) and self._rows == other._rows

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Log({self._rows!r})"


EMPTY = Log([])


def item_key(item: Any) -> Any:
    """What an item is compared by: itself, or for a table (a ``file``
    reference, whose values are scalars) its sorted ``(key, value)`` pairs."""
    return tuple(sorted(item.items())) if isinstance(item, dict) else item


def log_of(value: Any, stamp: Stamp | None, stored: Log | None) -> Log:
    """A field's log: the stored one, or, for a log stored before the rule
    kept entries (a plain list, written under ``lww``), its items each with
    the field's stamp, in their order."""
    if stored is not None:
        return stored
    if not isinstance(value, list) or stamp is None:
        return EMPTY
    return Log([[item, *stamp, position] for position, item in enumerate(value)])


def apply(log: Log, edit: dict[str, list[Any]], stamp: Stamp) -> Log:
    """``log`` after ``edit`` (as checked by the schema) stamped ``stamp``; see
    the module docstring for the guarantees."""
    gone, added = {item_key(item) for item in edit["remove"]}, edit["add"]
    rows = [row for row in log.rows() if item_key(row[0]) not in gone] if gone else log.rows()
    present = {item_key(row[0]) for row in rows}
    added_keys = [item_key(item) for item in added]
    last = rows[-1] if rows else None
    if (
        len(set(added_keys)) == len(added)
        and present.isdisjoint(added_keys)
        and (last is None or (Stamp(last[1], last[2], last[3]), last[4]) < (stamp, 0))
    ):  # removals and additions after the newest entry: no reordering
        if not added and len(rows) == len(log):
            return log
        return Log(rows + [[item, *stamp, position] for position, item in enumerate(added)])
    by_item = {item_key(entry.item): entry for entry in Log(rows).entries()}
    for position, (item, known_key) in enumerate(zip(added, added_keys, strict=True)):
        known = by_item.get(known_key)
        if known is None or (stamp, position) < (known.stamp, known.position):
            by_item[known_key] = Entry(stamp, position, item)
    ordered = sorted(by_item.values(), key=lambda e: (e.stamp, e.position, item_key(e.item)))
    after = Log.of(tuple(ordered))
    return log if after == log else after
