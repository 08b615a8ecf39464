"""Delta sync: the data dictionary, field mapping, conflict rules and the engine.

Layers, each depending only on the ones above it in this list:

- :mod:`fieldpush.sync.errors` — :class:`SyncError`, the engine's refusal;
- :mod:`fieldpush.sync.hlc` — hybrid logical clock stamps, clamping;
- :mod:`fieldpush.sync.schema` — ``config/schema.toml``: record types, fields,
  validation (:class:`~fieldpush.sync.schema.InvalidValue`), who may read and write;
- :mod:`fieldpush.sync.mapping` — ``config/mappings.toml``: per side (phone, CRM)
  renames, value maps and conversions;
- :mod:`fieldpush.sync.rules` — the pure per-field merge (``mdm``, ``lww``,
  ``locked``), a function of the stored record and one mutation;
- :mod:`fieldpush.sync.view` — what a reader sees of a record;
- :mod:`fieldpush.sync.codec` — record states, results and log entries as
  msgpack; cursors as typed values and opaque text;
- :mod:`fieldpush.sync.catalog` — the record store with its schema and
  mappings, as the parts below share them;
- :mod:`fieldpush.sync.changelog` — page sizes; log reads from a client's cursor;
- :mod:`fieldpush.sync.commit` — a mutate batch: idempotency by ``mid``,
  mapping, validation, stamps, merge, the compare-and-set commit loop, the
  change-log entries;
- :mod:`fieldpush.sync.announce` — realtime ``record.changed`` events;
- :mod:`fieldpush.sync.pull` — pull: changes since a cursor, full download;
- :mod:`fieldpush.sync.crm` — the CRM's record writes and change feed;
- :mod:`fieldpush.sync.engine` — :class:`~fieldpush.sync.engine.SyncEngine`,
  which wires them for the session and the HTTP routes; ``actor_of``,
  ``load_sync_config``.
"""
