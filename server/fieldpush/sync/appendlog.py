"""The ``append`` rule for list fields (service logs, call notes). Pure.

A mutation's value for an ``append`` field is an *edit of the log*, checked
by :meth:`FieldSpec.check <fieldpush.sync.schema.FieldSpec.check>` into
``{"add": [...], "remove": [...]}`` (docs/sync.md, "Logs that merge": a plain
list sent means "these items must be present"); :func:`apply` merges it into
the stored log. The stored log is a tuple of :class:`Entry`: each item with the stamp
and position (in its mutation) of the edit that added it. Readers never see
the entries: the record's value is the plain list of items in entry order
(:func:`items`).

Guarantees of :func:`apply`:

- an item is in the log at most once (items are compared by value);
- entries are ordered by ``(stamp, position)``; an item added by several
  edits takes the earliest of them, so any order of the same additions ends in
  the same log, in the same order (tests/sync/test_sync_rules.py);
- a removal takes out the items present when it is applied; removing an item
  that is not there changes nothing (two devices striking the same entry both
  succeed). An addition stamped before a removal but arriving after it adds
  the item again: removals are not remembered (no tombstones to grow).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from fieldpush.sync.hlc import Stamp

__all__ = ["Entry", "apply", "entries_of", "items"]


class Entry(NamedTuple):
    """One item of a log and when it was added: ``(stamp, position)`` orders entries."""

    item: Any
    stamp: Stamp
    position: int


def entries_of(
    value: Any, stamp: Stamp | None, stored: Sequence[Entry] | None
) -> tuple[Entry, ...]:
    """A field's log: its stored entries, or, for a log stored before the rule
    kept entries (a plain list, written under ``lww``), its items each with the
    field's stamp, in their order."""
    if stored is not None:
        return tuple(stored)
    if not isinstance(value, list) or stamp is None:
        return ()
    return tuple(Entry(item, stamp, position) for position, item in enumerate(value))


def apply(log: Iterable[Entry], edit: dict[str, list[Any]], stamp: Stamp) -> tuple[Entry, ...]:
    """``log`` after ``edit`` (as checked by the schema) stamped ``stamp``; see
    the module docstring for the guarantees."""
    by_item = {entry.item: entry for entry in log}
    for item in edit["remove"]:
        by_item.pop(item, None)
    for position, item in enumerate(edit["add"]):
        known = by_item.get(item)
        if known is None or (stamp, position) < (known.stamp, known.position):
            by_item[item] = Entry(item, stamp, position)
    return tuple(sorted(by_item.values(), key=lambda entry: (entry.stamp, entry.position)))


def items(log: Iterable[Entry]) -> list[Any]:
    """What readers see: the items, in entry order."""
    return [entry.item for entry in log]
