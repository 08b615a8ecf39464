"""The HTTP API: one toolkit and one module per route group.

- :mod:`fieldpush.http.toolkit` — the error type and body, auth, the body
  reader, field checks, exception handlers;
- :mod:`fieldpush.http.publish` — ``POST /v1/publish`` (a plain ASGI endpoint);
- :mod:`fieldpush.http.poll` — ``POST /v1/poll``;
- :mod:`fieldpush.http.health` — ``/healthz``, ``/readyz``, ``/metrics``;
- :mod:`fieldpush.http.dispatch` — receipts, HTTP acks, presence;
- :mod:`fieldpush.http.sync` — delta sync and the CRM's calls;
- :mod:`fieldpush.http.routes` — all of them, for the app.
"""
