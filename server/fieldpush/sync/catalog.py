"""The records and what describes them: what every sync part reads."""

from __future__ import annotations

from dataclasses import dataclass

from fieldpush.backend.base import RecordStore
from fieldpush.sync.mapping import Mappings
from fieldpush.sync.schema import Schema

__all__ = ["Catalog"]


@dataclass(frozen=True, slots=True)
class Catalog:
    """The record store, the data dictionary of its records and the mappings
    of each side, both checked when they were loaded
    (:func:`fieldpush.sync.engine.load_sync_config`). One per engine, shared
    by the committer, the puller and the CRM's side."""

    store: RecordStore
    schema: Schema
    mappings: Mappings
