"""The node's side of the audit trail: the recorder that batches entries into
the backend's :class:`~fieldpush.backend.base.AuditLog` (:mod:`.recorder`)."""

from fieldpush.trail.recorder import AuditBacklogged, AuditRecorder

__all__ = ["AuditBacklogged", "AuditRecorder"]
