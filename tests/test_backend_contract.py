"""One contract suite, run against both backends (fieldpush.backend.base states
the guarantees checked here), then what only the Redis backend can do wrong:
outages, unresponsive servers, credentials, and its pub/sub client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import hiredis
import pytest

from fieldpush.backend.base import Backend, Idempotency, PublishRequest
from fieldpush.backend.memory.backend import MemoryBackend
from fieldpush.backend.redis.backend import RedisBackend
from fieldpush.backend.redis.pubsub import PubSub, RedisAddress
from fieldpush.errors import BackendUnavailable, IdempotencyConflict
from fieldpush.events.event import Event, encode_body
from fieldpush.events.offsets import Offset
from tests.support.redis_server import RedisServer
from tests.support.timing import scaled


class Sink:
    """Records the live feed."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reconnects = 0
        self.changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    def on_reconnected(self) -> None:
        self.reconnects += 1
        self.changed.set()

    def on(self, channel: str) -> list[Event]:
        return [e for e in self.events if e.channel == channel]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(scaled(timeout)):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


TIMEOUT_S = 1.0


def make_backend(kind: str, redis_url: str | None, timeout_s: float = TIMEOUT_S) -> Backend:
    """History keeps 5 events (an hour), so trimming by count is easy to reach."""
    if kind == "memory":
        return MemoryBackend(history_max_events=5, history_max_age_s=3600, idempotency_ttl_s=60)
    assert redis_url is not None
    return RedisBackend(
        url=redis_url,
        timeout_s=timeout_s,
        history_max_events=5,
        history_max_age_s=3600,
        history_meta_ttl_s=7200,
        idempotency_ttl_s=60,
    )


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Backend, Sink]]:
    """A started backend of each kind, with a recording sink."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    sink = Sink()
    store = make_backend(request.param, redis_url)
    await store.start(sink)
    try:
        yield store, sink
    finally:
        await store.close()


def request(
    *channels: str,
    n: int = 0,
    key: Idempotency | None = None,
) -> PublishRequest:
    event_id = f"ev{n}"
    body = encode_body(event_id, "k", "normal", {"n": n})
    return PublishRequest(
        channels=channels, event_id=event_id, priority="normal", body=body, idempotency=key
    )


async def publish(store: Backend, channel: str, n: int) -> Offset:
    offset = Offset.parse((await store.publish(request(channel, n=n))).offsets[channel])
    assert offset is not None
    return offset


# ----------------------------------------------------------------- both backends


async def test_offsets_increase_without_holes(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    empty = await store.read("team:a", None, 10)
    assert empty.recovered and empty.top.seq == 0 and empty.events == []
    offsets = [await publish(store, "team:a", n) for n in range(4)]
    assert [o.seq for o in offsets] == [1, 2, 3, 4]
    assert {o.epoch for o in offsets} == {empty.top.epoch}  # the read gave the channel its epoch
    assert [o.ms for o in offsets] == sorted(o.ms for o in offsets)
    assert (await store.read("team:a", None, 10)).top == offsets[-1]


async def test_read_after_an_offset_and_paging(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    start = (await store.read("team:a", None, 0)).top
    sent = [str(await publish(store, "team:a", n)) for n in range(4)]
    history = await store.read("team:a", start, 10)
    assert history.recovered and [e.offset for e in history.events] == sent
    assert history.events[0].fields == {
        "id": "ev0",
        "kind": "k",
        "priority": "normal",
        "data": {"n": 0},
    }
    assert history.events[0].priority == "normal" and history.events[0].channel == "team:a"
    page = await store.read("team:a", start, 2)
    assert page.recovered and [e.offset for e in page.events] == sent[:2]
    assert str(page.top) == sent[-1]
    rest = await store.read("team:a", page.events[-1].position, 10)
    assert rest.recovered and [e.offset for e in rest.events] == sent[2:]
    at_top = await store.read("team:a", Offset.parse(sent[-1]), 10)
    assert at_top.recovered and at_top.events == []
    no_room = await store.read("team:a", start, 0)  # the verdict does not depend on the limit
    assert no_room.recovered and no_room.events == []


async def test_unrecoverable_offsets(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    offsets = [await publish(store, "team:a", n) for n in range(8)]  # history keeps the last 5
    first = offsets[0]
    trimmed = await store.read("team:a", first, 10)
    assert not trimmed.recovered and trimmed.events == [] and trimmed.top.seq == 8
    other_epoch = await store.read("team:a", Offset("elsewhere", first.ms, 1), 10)
    assert not other_epoch.recovered and other_epoch.events == []
    ahead = await store.read("team:a", Offset(first.epoch, first.ms, 99), 10)
    assert not ahead.recovered and ahead.events == []
    inside = await store.read("team:a", offsets[2], 10)  # event 4 is the oldest retained
    assert inside.recovered and [e.seq for e in inside.events] == [4, 5, 6, 7, 8]
    assert not (await store.read("team:a", offsets[1], 10)).recovered


async def test_idempotent_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    key = Idempotency("disp", "k1", "fingerprint-1")
    first = await store.publish(request("team:a", "user:u1", n=1, key=key))
    again = await store.publish(request("team:a", "user:u1", n=2, key=key))  # a retry
    assert not first.duplicate and again.duplicate
    assert (again.id, again.offsets) == (first.id, first.offsets)
    with pytest.raises(IdempotencyConflict):
        await store.publish(request("team:a", n=3, key=Idempotency("disp", "k1", "fingerprint-2")))
    other = await store.publish(
        request("team:a", n=4, key=Idempotency("other", "k1", "fingerprint-1"))
    )
    assert other.id == "ev4" and not other.duplicate
    # Publisher "a:b" with key "c" is not publisher "a" with key "b:c".
    colon = await store.publish(request("team:a", n=5, key=Idempotency("a:b", "c", "f")))
    split = await store.publish(request("team:a", n=6, key=Idempotency("a", "b:c", "f")))
    assert not colon.duplicate and not split.duplicate and split.id == "ev6"
    assert (await store.read("team:a", None, 0)).top.seq == 4  # ev1, ev4, ev5, ev6
    assert (await store.read("user:u1", None, 0)).top.seq == 1


async def test_multi_channel_publish(backend: tuple[Backend, Sink]) -> None:
    store, _ = backend
    channels = ("team:a", "user:u1", "broadcast")
    sent = request(*channels, n=1)
    result = await store.publish(sent)
    assert result.id == "ev1" and set(result.offsets) == set(channels)
    for channel, offset in result.offsets.items():
        position = Offset.parse(offset)
        assert position is not None and position.seq == 1
        history = await store.read(channel, Offset(position.epoch, 0, 0), 10)
        assert history.recovered and [e.body for e in history.events] == [sent.body]
        assert history.events[0].channel == channel and history.events[0].offset == offset


async def test_live_feed_in_order_after_subscribe(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await store.subscribe("team:a")
    sent = [(await store.publish(request("team:a", "team:other", n=n))) for n in range(20)]
    await sink.wait_for(lambda: len(sink.on("team:a")) == 20)
    live = sink.on("team:a")
    assert [e.offset for e in live] == [r.offsets["team:a"] for r in sent]
    assert [e.id for e in live] == [f"ev{n}" for n in range(20)]
    if isinstance(store, RedisBackend):  # memory delivers every channel of its one process
        assert sink.on("team:other") == []


async def test_many_concurrent_first_subscriptions(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    channels = [f"user:u{i}" for i in range(300)]
    await asyncio.gather(*(store.subscribe(ch) for ch in channels))
    await store.publish(request(*channels[:100], n=1))
    await asyncio.gather(*(store.publish(request(ch, n=2)) for ch in channels[100:]))
    await sink.wait_for(lambda: len(sink.events) == 300)
    assert sorted(e.channel for e in sink.events) == sorted(channels)


async def test_concurrent_subscriptions_of_one_channel(backend: tuple[Backend, Sink]) -> None:
    store, sink = backend
    await asyncio.gather(*(store.subscribe("team:a") for _ in range(5)))
    await store.subscribe("team:a")  # again, once confirmed
    await store.publish(request("team:a", n=1))
    await store.publish(request("team:a", n=2))
    await sink.wait_for(lambda: len(sink.on("team:a")) == 2)
    await asyncio.sleep(0.05)  # a duplicate would arrive right behind
    assert [e.id for e in sink.on("team:a")] == ["ev1", "ev2"]


# ------------------------------------------------------------------- redis only


async def test_subscriptions_coalesce_into_one_command(
    redis_server: RedisServer, redis_url: str
) -> None:
    sink = Sink()
    store = make_backend("redis", redis_url)
    await store.start(sink)
    try:
        assert redis_server.command("CONFIG", "RESETSTAT") == b"OK"
        await asyncio.gather(*(store.subscribe(f"user:u{i}") for i in range(200)))
        stats = redis_server.command("INFO", "commandstats").decode()
        assert "cmdstat_subscribe:calls=1," in stats
    finally:
        await store.close()


async def test_unsubscribe_stops_the_live_feed(redis_url: str) -> None:
    sink = Sink()
    store = make_backend("redis", redis_url)
    await store.start(sink)
    try:
        await store.subscribe("team:a")
        await store.subscribe("team:b")
        await store.publish(request("team:a", "team:b", n=1))
        await sink.wait_for(lambda: len(sink.on("team:a")) == 1)
        await store.unsubscribe("team:a")
        await store.publish(request("team:a", "team:b", n=2))
        await sink.wait_for(lambda: len(sink.on("team:b")) == 2)
        assert [e.id for e in sink.on("team:a")] == ["ev1"]
    finally:
        await store.close()


async def test_redis_killed_and_restarted(tmp_path: Path) -> None:
    """Killed: publish and read fail fast with BackendUnavailable (never an
    offset). Restarted: history is intact (AOF), the live feed is re-subscribed
    and reported once, and new events arrive live."""
    server = RedisServer(tmp_path)
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url)
    await store.start(sink)
    try:
        await store.subscribe("team:a")
        before = await publish(store, "team:a", 1)
        await sink.wait_for(lambda: len(sink.on("team:a")) == 1)  # else it may be lost live
        server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await store.publish(request("team:a", n=2))
        with pytest.raises(BackendUnavailable):
            await store.read("team:a", None, 0)
        assert time.monotonic() - started < TIMEOUT_S + scaled(0.5)
        assert not await store.ready()
        server.restart()
        await sink.wait_for(lambda: sink.reconnects == 1, timeout=10)
        assert await store.ready()
        after = await publish(store, "team:a", 3)
        await sink.wait_for(lambda: [e.id for e in sink.on("team:a")] == ["ev1", "ev3"])
        history = await store.read("team:a", Offset(before.epoch, 0, 0), 10)
        assert history.recovered and [e.id for e in history.events] == ["ev1", "ev3"]
        assert history.top == after and after.seq == 2
        assert sink.reconnects == 1
    finally:
        await store.close()
        server.stop()


async def test_redis_unresponsive(tmp_path: Path) -> None:
    """A server that accepts but does not answer (SIGSTOP): every call fails
    with BackendUnavailable within about timeout_s; once it answers again,
    everything works without a restart of the backend."""
    timeout_s = 0.5
    server = RedisServer(tmp_path)
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url, timeout_s=timeout_s)
    await store.start(sink)
    try:
        await store.subscribe("team:a")
        await publish(store, "team:a", 1)
        server.pause()

        async def fails_in_time(call: Callable[[], object]) -> None:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await call()  # type: ignore[misc]
            assert time.monotonic() - started < timeout_s + scaled(0.5)

        await asyncio.gather(
            fails_in_time(lambda: store.publish(request("team:a", n=2))),
            fails_in_time(lambda: store.read("team:a", None, 0)),
            fails_in_time(lambda: store.subscribe("team:b")),
        )
        assert not await store.ready()
        server.resume()
        assert await store.ready()
        await store.subscribe("team:c")
        await store.publish(request("team:a", "team:c", n=3))
        await sink.wait_for(
            lambda: len(sink.on("team:c")) == 1 and sink.on("team:a")[-1].id == "ev3"
        )
    finally:
        await store.close()
        server.stop()


async def test_redis_password_and_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fieldpush.backend")  # secrets in no log line
    server = RedisServer(tmp_path, password="s3cret-pw")
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url.replace("/0", "/3"))
    wrong = make_backend("redis", server.url.replace("s3cret-pw", "wr0ng-pw"), timeout_s=0.3)
    try:
        await store.start(sink)
        await store.subscribe("team:a")
        sent = await publish(store, "team:a", 1)
        await sink.wait_for(lambda: len(sink.on("team:a")) == 1)
        assert (await store.read("team:a", Offset(sent.epoch, 0, 0), 10)).events[0].id == "ev1"
        assert await store.ready()
        assert server.command("KEYS", "*") == []  # database 0 is untouched
        await wrong.start(Sink())
        with pytest.raises(BackendUnavailable):
            await wrong.publish(request("team:a", n=2))
        assert not await wrong.ready()
    finally:
        await wrong.close()
        await store.close()
        server.stop()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and refusals[0].levelno == logging.WARNING  # said once, loud ...
    assert "s3cret-pw" not in caplog.text and "wr0ng-pw" not in caplog.text  # ... without secrets


class FakeRedis:
    """Answers PING; confirms SUBSCRIBE only once ``confirm`` is set."""

    def __init__(self) -> None:
        self.confirm = False
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[None]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        self.writers.append(writer)
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    if command[0].upper() == b"PING":
                        writer.write(b"+PONG\r\n")
                    elif command[0].upper() == b"SUBSCRIBE" and self.confirm:
                        for count, channel in enumerate(command[1:], 1):
                            writer.write(
                                b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n"
                                % (len(channel), channel, count)
                            )
        except ConnectionError:
            pass
        finally:
            writer.close()

    def drop_connections(self) -> None:
        for writer in self.writers:
            writer.transport.abort()


async def test_pubsub_survives_a_subscription_failing_during_a_reconnect() -> None:
    """A subscribe() that times out while the client is re-subscribing after a
    reconnect fails that call only: the client keeps reconnecting and reports
    the reconnect once Redis confirms every channel."""
    fake = FakeRedis()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reconnects: list[float] = []
    pubsub = PubSub(
        RedisAddress(port=port),
        on_message=lambda channel, payload: None,
        on_reconnected=lambda: reconnects.append(time.monotonic()),
        timeout_s=0.3,
    )
    try:
        await pubsub.start()
        assert pubsub.connected
        with pytest.raises(BackendUnavailable):
            await pubsub.subscribe(b"x")  # never confirmed; stays wanted
        pending = asyncio.create_task(pubsub.subscribe(b"y"))
        await asyncio.sleep(0.05)
        fake.drop_connections()  # the reconnect re-subscribes x and y, unconfirmed
        with pytest.raises(BackendUnavailable):
            await pending
        fake.confirm = True
        async with asyncio.timeout(scaled(5)):
            while not (pubsub.connected and reconnects):
                await asyncio.sleep(0.01)
        await pubsub.subscribe(b"z")
        assert len(reconnects) == 1
    finally:
        await pubsub.close()
        fake.drop_connections()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*fake.handlers)
