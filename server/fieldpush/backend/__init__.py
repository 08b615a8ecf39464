"""Shared state: history, live fan-out between nodes, idempotency.

Only this package talks to Redis. :class:`~fieldpush.backend.base.Backend` is the
interface; :mod:`.memory` (one process, the embedded default) and :mod:`.redis`
implement it, and the contract suites in ``tests/backend/`` (test_audit.py, test_history.py,
test_ledger.py, test_presence.py, test_records.py) run against both.
"""

from fieldpush.backend.base import Backend, EventSink, History, PublishRequest, PublishResult

__all__ = ["Backend", "EventSink", "History", "PublishRequest", "PublishResult"]
