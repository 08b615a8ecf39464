"""The audit trail's format, pure: entries, their canonical bytes and the hash
chain (:mod:`.chain`). No I/O; the backend stores entries
(:class:`~fieldpush.backend.base.AuditLog`), the CLI verifies exported trails.
"""

from fieldpush.audit.chain import (
    GENESIS,
    AuditDraft,
    AuditEntry,
    ChainError,
    Head,
    canonical,
    chain,
    entry_hash,
    parse_entry,
)

__all__ = [
    "GENESIS",
    "AuditDraft",
    "AuditEntry",
    "ChainError",
    "Head",
    "canonical",
    "chain",
    "entry_hash",
    "parse_entry",
]
