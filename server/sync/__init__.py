"""Delta sync: the data dictionary, field mapping, conflict rules and the engine.

Layers, each depending only on the ones above it in this list:

- :mod:`server.sync.hlc` — hybrid logical clock stamps, clamping;
- :mod:`server.sync.schema` — ``config/schema.toml``: record types, fields,
  validation, rules, who may read and write;
- :mod:`server.sync.mapping` — ``config/mappings.toml``: per side (phone, CRM)
  renames, value maps and conversions;
- :mod:`server.sync.rules` — the pure per-field merge (``mdm``, ``lww``,
  ``locked``), a function of the stored record and one mutation;
- :mod:`server.sync.engine` — batches, idempotency by ``mid``, atomic commits
  through the backend's record store, the change log, pull and realtime events.
"""
