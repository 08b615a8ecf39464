"""fieldpush: the real-time push and delta-sync server between a CRM and field phones.

The package layout, from the bottom up (docs/architecture.md draws it):
``events`` and ``backend`` (shared state), ``identity``, ``sync`` and ``tracking``,
``delivery``, ``transport`` and ``http``, then ``node`` (wiring), ``app`` and ``cli``.
The wire protocol is :mod:`fieldpush_client.protocol`, shared with the SDK.
"""

__version__ = "0.1.0"
