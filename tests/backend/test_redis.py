"""What only the Redis backend can do wrong: outages, unresponsive servers,
credentials, and its pub/sub client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import hiredis
import pytest

from fieldpush.backend.redis.client import RedisClient
from fieldpush.backend.redis.pubsub import PubSub, RedisAddress
from fieldpush.errors import BackendUnavailable
from fieldpush.events.offsets import Offset
from tests.support.backends import (
    TIMEOUT_S,
    Sink,
    event_request,
    make_backend,
    publish_event,
    start_backend,
)
from tests.support.proxy import proxy_to
from tests.support.redis_server import RedisServer
from tests.support.timing import eventually, scaled

# ------------------------------------------------------------------- redis only


@pytest.fixture
async def redis_backend(redis_url: str) -> AsyncIterator[tuple[Any, Sink]]:
    """A started Redis backend on the shared redis-server, and its sink."""
    sink = Sink()
    store = make_backend("redis", redis_url)
    await start_backend(store, sink)
    try:
        yield store, sink
    finally:
        await store.close()


async def test_subscriptions_coalesce_into_one_command(
    redis_server: RedisServer, redis_backend: tuple[Any, Sink]
) -> None:
    store, _ = redis_backend
    assert redis_server.command("CONFIG", "RESETSTAT") == b"OK"
    await asyncio.gather(*(store.subscribe(f"team:t{i}") for i in range(200)))
    stats = redis_server.command("INFO", "commandstats").decode()
    assert "cmdstat_subscribe:calls=1," in stats


async def test_user_channels_live_under_one_pattern_subscription(
    redis_server: RedisServer, redis_backend: tuple[Any, Sink]
) -> None:
    """A node's user channels need no SUBSCRIBE of their own (the node holds
    ``fp:user:*``); their events still reach the sink, only while subscribed,
    and the events of users the node does not serve are dropped."""
    store, sink = redis_backend
    assert redis_server.command("CONFIG", "RESETSTAT") == b"OK"
    await asyncio.gather(*(store.subscribe(f"user:u{i}") for i in range(200)))
    stats = redis_server.command("INFO", "commandstats").decode()
    assert "cmdstat_subscribe:" not in stats and "cmdstat_psubscribe:" not in stats
    await publish_event(store, "user:nobody-here", 1)
    mine = await publish_event(store, "user:u7", 2)
    await eventually(lambda: sink.on("user:u7"), message="the user's event came live")
    assert [e.offset for e in sink.events] == [str(mine)]
    await store.unsubscribe("user:u7")
    await publish_event(store, "user:u7", 3)
    marker = await publish_event(store, "user:u8", 4)
    await eventually(lambda: sink.on("user:u8"), message="the marker came live")
    assert [e.offset for e in sink.events] == [str(mine), str(marker)]


async def test_unsubscribe_stops_the_live_feed(redis_backend: tuple[Any, Sink]) -> None:
    store, sink = redis_backend
    await store.subscribe("team:a")
    await store.subscribe("team:b")
    await store.publish(event_request("team:a", "team:b", n=1))
    await eventually(lambda: len(sink.on("team:a")) == 1, message="the live event")
    await store.unsubscribe("team:a")
    await store.publish(event_request("team:a", "team:b", n=2))
    await eventually(lambda: len(sink.on("team:b")) == 2, message="both events on team:b")
    assert [e.id for e in sink.on("team:a")] == ["ev1"]


async def test_redis_killed_and_restarted(tmp_path: Path) -> None:
    """Killed: publish and read fail fast with BackendUnavailable (never an
    offset). Restarted: history is intact (AOF), the live feed is re-subscribed
    and reported once, and new events arrive live."""
    server = RedisServer(tmp_path)
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url)
    await start_backend(store, sink)
    try:
        await store.subscribe("team:a")
        before = await publish_event(store, "team:a", 1)
        await eventually(
            lambda: len(sink.on("team:a")) == 1, message="the live event"
        )  # else it may be lost live
        server.kill()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await store.publish(event_request("team:a", n=2))
        with pytest.raises(BackendUnavailable):
            await store.read("team:a", None, 0)
        assert time.monotonic() - started < TIMEOUT_S + scaled(0.5)
        assert not await store.ready()
        server.restart()
        await eventually(
            lambda: sink.reconnects == 1, timeout=10, message="the reconnect is reported"
        )
        assert await store.ready()
        after = await publish_event(store, "team:a", 3)
        await eventually(
            lambda: [e.id for e in sink.on("team:a")] == ["ev1", "ev3"], message="ev3 live"
        )
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
    await start_backend(store, sink)
    try:
        await store.subscribe("team:a")
        await publish_event(store, "team:a", 1)
        server.pause()

        async def fails_in_time(call: Callable[[], object]) -> None:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await call()  # type: ignore[misc]
            assert time.monotonic() - started < timeout_s + scaled(0.5)

        await asyncio.gather(
            fails_in_time(lambda: store.publish(event_request("team:a", n=2))),
            fails_in_time(lambda: store.read("team:a", None, 0)),
            fails_in_time(lambda: store.subscribe("team:b")),
        )
        assert not await store.ready()
        server.resume()
        assert await store.ready()
        await store.subscribe("team:c")
        await store.publish(event_request("team:a", "team:c", n=3))
        await eventually(
            lambda: len(sink.on("team:c")) == 1 and sink.on("team:a")[-1].id == "ev3",
            message="live again on team:a and team:c",
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
        await start_backend(store, sink)
        await store.subscribe("team:a")
        sent = await publish_event(store, "team:a", 1)
        await eventually(lambda: len(sink.on("team:a")) == 1, message="the live event")
        assert (await store.read("team:a", Offset(sent.epoch, 0, 0), 10)).events[0].id == "ev1"
        assert await store.ready()
        assert server.command("KEYS", "*") == []  # database 0 is untouched
        await start_backend(wrong, Sink())
        with pytest.raises(BackendUnavailable):
            await wrong.publish(event_request("team:a", n=2))
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
        self.subscribed: list[bytes] = []  # every channel of every SUBSCRIBE received
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
                    name = command[0].upper()
                    if name == b"PING":
                        writer.write(b"+PONG\r\n")
                    elif name == b"SUBSCRIBE":
                        self.subscribed += command[1:]
                        for count, channel in enumerate(command[1:] if self.confirm else [], 1):
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
        await eventually(lambda: b"y" in fake.subscribed, message="SUBSCRIBE y was sent")
        fake.drop_connections()  # the reconnect re-subscribes x and y, unconfirmed
        with pytest.raises(BackendUnavailable):
            await pending
        fake.confirm = True
        await eventually(
            lambda: pubsub.connected and reconnects, message="reconnected and confirmed"
        )
        await pubsub.subscribe(b"z")
        assert len(reconnects) == 1
    finally:
        await pubsub.close()
        fake.drop_connections()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*fake.handlers)


async def test_a_link_dropped_as_soon_as_it_is_made_is_not_a_reconnect(redis_url: str) -> None:
    """In front of a Redis that is down, a proxy or load balancer may accept
    each connection and close it at once: every command fails, and none of
    those connections counts as a reconnect; the first that answers does."""
    target = RedisAddress.from_url(redis_url)
    async with proxy_to((target.host, target.port)) as link:
        client = RedisClient(
            RedisAddress.from_url(f"redis://127.0.0.1:{link.port}"), timeout_s=scaled(1)
        )
        try:
            assert await client.execute(b"PING") == b"PONG"
            link.cut()
            for _ in range(5):
                with pytest.raises(BackendUnavailable):
                    await client.execute(b"PING")
            assert client.reconnects == 0
            link.restore()
            assert await client.pipeline([(b"PING",), (b"PING",)]) == [b"PONG", b"PONG"]
            assert client.reconnects == 1
            assert await client.execute(b"PING") == b"PONG"
            assert client.reconnects == 1
        finally:
            await client.close()
