"""Shared state: history, live fan-out between nodes, idempotency.

Only this package talks to Redis. :class:`~fieldpush.backend.base.Backend` is the
interface; :mod:`.memory` (one process, the embedded default) and :mod:`.redis`
implement it, and one contract suite (``tests/test_backend_contract.py``) runs
against both.
"""

from fieldpush.backend.base import Backend, EventSink, History, PublishRequest, PublishResult

__all__ = ["Backend", "EventSink", "History", "PublishRequest", "PublishResult"]
