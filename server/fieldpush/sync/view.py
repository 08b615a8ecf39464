"""What a reader sees of a record: the fields its role may read, in its side's names. Pure."""

from __future__ import annotations

from typing import Any

from fieldpush.sync.mapping import TypeMapping
from fieldpush.sync.rules import Actor, RecordState
from fieldpush.sync.schema import RecordType

__all__ = ["visible"]


def visible(
    rtype: RecordType,
    mapping: TypeMapping,
    actor: Actor,
    state: RecordState | None,
    fields: frozenset[str] | None = None,
) -> dict[str, Any] | None:
    """The record's values ``actor`` may read (of ``fields`` only, when
    given), in the actor's names (None: the record does not exist or is
    deleted). Scope is the caller's to check."""
    if state is None or state.deleted is not None:
        return None
    readable = rtype.readable_fields(actor.role)
    if fields is not None:
        readable &= fields
    return mapping.outbound({n: v for n, v in state.values().items() if n in readable})
