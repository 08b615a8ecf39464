"""The skew report (fieldpush.sync.skew) against a Redis that goes away: a
registry write that fails is skipped without failing the caller, the metrics
are still counted, and the next batch after the restart writes the offset."""

from __future__ import annotations

from pathlib import Path

from fieldpush.metrics import Metrics
from fieldpush.sync.rules import Actor
from fieldpush.sync.skew import SkewReport
from tests.backend.test_devices import hello
from tests.support.backends import NODE, Sink, make_backend, start_backend
from tests.support.redis_server import RedisServer
from tests.support.timing import eventually

ANN = Actor("ann", "sales", "phone")


async def test_a_failed_registry_write_is_skipped_and_made_by_the_next_batch(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    backend = make_backend("redis", server.url)
    await start_backend(backend, Sink())
    metrics = Metrics()
    report = SkewReport(backend.devices.note_skew, metrics, skewed_ms=300_000)
    try:
        await backend.presence.beat(NODE, 60_000)
        await backend.open_session(hello("ann", "s1", "phone"))
        await report.note(ANN, [60_000, 400_000])
        (device,) = await backend.devices.of_user("ann")
        assert device.skew_ms == 400_000
        server.kill()
        await report.note(ANN, [-10_000])  # no exception: the mutation is committed
        assert metrics.clock_offset.counts[-1] == 0 and sum(metrics.clock_offset.counts) == 3
        assert metrics.clock_skewed == 1
        server.restart()
        await eventually(backend.ready, message="Redis is back")
        (device,) = await backend.devices.of_user("ann")
        assert device.skew_ms == 400_000  # the failed write changed nothing
        await report.note(ANN, [-10_000])
        (device,) = await backend.devices.of_user("ann")
        assert device.skew_ms == -10_000
    finally:
        await backend.close()
        server.stop()
