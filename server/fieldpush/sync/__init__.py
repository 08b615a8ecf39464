"""Delta sync: the data dictionary, field mapping, conflict rules and the engine.

Layers, each depending only on the ones above it in this list:

- :mod:`fieldpush.sync.hlc` — hybrid logical clock stamps, clamping;
- :mod:`fieldpush.sync.schema` — ``config/schema.toml``: record types, fields,
  validation, rules, who may read and write;
- :mod:`fieldpush.sync.mapping` — ``config/mappings.toml``: per side (phone, CRM)
  renames, value maps and conversions;
- :mod:`fieldpush.sync.rules` — the pure per-field merge (``mdm``, ``lww``,
  ``locked``), a function of the stored record and one mutation;
- :mod:`fieldpush.sync.engine` — batches, idempotency by ``mid``, atomic commits
  through the backend's record store, the change log, pull and realtime events.
"""
