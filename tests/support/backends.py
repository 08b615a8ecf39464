"""Backends for tests: the one place that builds and starts them.

Every test that needs a bare backend (the contract suite in tests/backend, the
hub's tests) goes through :func:`make_backend` and :func:`start_backend`, so a
change to the constructors or to ``Backend.start`` is adapted here only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from fieldpush.backend.base import (
    AccessListener,
    AccountState,
    Backend,
    CommitStatus,
    Idempotency,
    PublishRequest,
    RevokedToken,
    Stale,
    Tracking,
)
from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.backend.redis.backend import RedisBackend
from fieldpush.events.event import Event, encode_body
from fieldpush.events.offsets import Offset

__all__ = [
    "NODE",
    "TIMEOUT_S",
    "BackendFactory",
    "Sink",
    "event_request",
    "is_stale",
    "make_backend",
    "publish_event",
    "start_backend",
]

#: The node id a test backend is started as.
NODE = "node-a"

#: The Redis backend's command timeout in tests.
TIMEOUT_S = 1.0


class Sink:
    """Records the live feed, the reconnects, the kick requests and the access
    announcements of a backend."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reconnects = 0
        self.kicks: list[str] = []
        self.accounts: list[AccountState] = []
        self.revoked: list[RevokedToken] = []
        self.resyncs = 0

    def on_account(self, state: AccountState) -> None:
        self.accounts.append(state)

    def on_revoked(self, token: RevokedToken) -> None:
        self.revoked.append(token)

    def on_access_resync(self) -> None:
        self.resyncs += 1

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_reconnected(self) -> None:
        self.reconnects += 1

    def on_kick(self, session: str) -> None:
        self.kicks.append(session)

    def on(self, channel: str) -> list[Event]:
        return [e for e in self.events if e.channel == channel]


def make_backend(
    kind: str, redis_url: str | None, *, timeout_s: float = TIMEOUT_S, **limits: Any
) -> Backend:
    """A backend of ``kind`` (``memory`` or ``redis``), not started. By default
    history keeps 5 events (an hour), so trimming by count is easy to reach;
    ``limits`` override any constructor argument both backends share."""
    options: dict[str, Any] = {
        "history_max_events": 5,
        "history_max_age_s": 3600,
        "idempotency_ttl_s": 60,
        **limits,
    }
    if kind == "memory":
        return MemoryBackend(**options)
    assert kind == "redis" and redis_url is not None, (kind, redis_url)
    options.setdefault("history_meta_ttl_s", 7200)
    return RedisBackend(url=redis_url, timeout_s=timeout_s, **options)


async def start_backend(
    backend: Backend,
    sink: Any,
    *,
    node: str = NODE,
    on_kick: Callable[[str], None] | None = None,
    access: AccessListener | None = None,
) -> None:
    """Start ``backend`` as node ``node``: its live feed goes to ``sink``
    (``on_event``, ``on_reconnected``), kick requests to ``on_kick``, access
    announcements to ``access``. The only call of ``Backend.start`` in the tests."""
    if on_kick is not None:
        backend.presence.on_kick(node, on_kick)
    if access is not None:
        backend.accounts.listen(access)
    await backend.start(sink)


def event_request(
    *channels: str,
    n: int = 0,
    key: Idempotency | None = None,
    priority: str = "normal",
    tracking: Tracking | None = None,
) -> PublishRequest:
    """The publish of event ``ev<n>`` (kind ``k``, data ``{"n": n}``) to ``channels``."""
    event_id = f"ev{n}"
    body = encode_body(event_id, "k", priority, {"n": n})
    return PublishRequest(
        channels=channels,
        event_id=event_id,
        priority=priority,
        body=body,
        idempotency=key,
        tracking=tracking,
    )


async def publish_event(store: Backend, channel: str, n: int) -> Offset:
    """Publish ``ev<n>`` to ``channel``; its offset there."""
    offset = Offset.parse((await store.publish(event_request(channel, n=n))).offsets[channel])
    assert offset is not None
    return offset


def is_stale(result: CommitStatus) -> bool:
    """Whether a ``RecordStore.commit`` status says "not applied: the record changed"."""
    return isinstance(result, Stale)


#: The ``backend_factory`` fixture (tests/conftest.py):
#: ``async with backend_factory(**limits) as (backend, sink)``.
BackendFactory = Callable[..., contextlib.AbstractAsyncContextManager[tuple[Any, Sink]]]
