"""An event's origin is stored with it and restored by every read, on both backends
(the ``backend`` fixture of tests/conftest.py)."""

from __future__ import annotations

from fieldpush.backend.base import Backend, PublishRequest, Tracking
from fieldpush.events.event import decode_origin, encode_body, encode_origin
from tests.support.backends import Sink
from tests.support.timing import eventually

#: Spaces and slashes survive the stored token.
ORIGIN = ("al ice/1", "phone 2/b")


def request_for(event_id: str, priority: str = "normal", **extra: object) -> PublishRequest:
    body = encode_body(event_id, "record.changed", priority, {"origin": "in the body only"})
    return PublishRequest(("user:alice",), event_id, priority, body, **extra)  # type: ignore[arg-type]


def test_the_origin_token_round_trips() -> None:
    token = encode_origin(ORIGIN)
    assert b" " not in token and token.count(b"/") == 1
    assert decode_origin(token) == ORIGIN


async def test_history_and_the_live_feed_carry_the_origin(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await store.subscribe("user:alice")
    start = (await store.read("user:alice", None, 0)).top
    await store.publish(request_for("with", origin=ORIGIN))
    await store.publish(request_for("without"))
    history = await store.read("user:alice", start, 10)
    assert [(e.id, e.origin) for e in history.events] == [("with", ORIGIN), ("without", None)]
    await eventually(lambda: len(sink.events) >= 2, message="both events arrived live")
    assert [(e.id, e.origin) for e in sink.events] == [("with", ORIGIN), ("without", None)]


async def test_a_pending_critical_event_keeps_its_origin(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    tracking = Tracking("record.changed", 0)
    await store.publish(request_for("c1", "critical", origin=ORIGIN, tracking=tracking))
    await store.publish(request_for("c2", "critical", tracking=tracking))
    pending = await store.ledger.pending("alice")
    assert [(e.id, e.origin) for e in pending] == [("c1", ORIGIN), ("c2", None)]
