"""The SDK's offline queue on weak networks (issue 13, item 4), against real
nodes: it flushes over whichever transport works, retries what is worth
retrying, and keeps what the server refused for the user to fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.errors import PublishError
from fieldpush_client.protocol import ProtocolError
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.proxy import proxy_to
from tests.support.redis_server import RedisServer
from tests.support.stores import STORE_KEY, raw_bytes
from tests.support.timing import eventually, scaled


def dead_port() -> int:
    """A loopback port nobody listens on (the WebSocket path is blocked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def alice(node: RunningNode, **options: Any) -> PushClient:
    return PushClient(
        options.pop("url", node.ws_url),
        token=node.token("alice", "sales", ("north",)),
        device="a-phone",
        **options,
    )


async def server_record(node: RunningNode, rid: str) -> dict[str, Any] | None:
    fresh = SyncStore(":memory:", key=STORE_KEY)
    async with alice(node) as client, SyncClient(client, fresh, auto=False) as sync:
        await client.wait_connected(scaled(5))
        await sync.pull()
    return fresh.record("customer", rid)


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings()) as running:
        await running.crm_put("customer", "c1", name="ACME", owner="alice", team="north")
        yield running


async def test_with_the_socket_blocked_the_queue_flushes_over_http_push(
    node: RunningNode, tmp_path: Path
) -> None:
    """The defect: events came by polling, but ``flush()`` raised NotConnected."""
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    store.edit("customer", "c1", {"stage": "negotiation"})
    client = alice(
        node,
        url=f"ws://127.0.0.1:{dead_port()}/v1/ws",
        http_url=node.url,
        fallback_after_failures=1,
        socket_retry_s=3600,
        poll_wait_s=0.2,
    )
    async with client, SyncClient(client, store) as sync:
        await eventually(lambda: store.queued() == [], message="the queue flushed by HTTP")
        sync.edit("customer", "c1", {"phone": "+49 5"})  # typed while on the fallback
        await eventually(lambda: store.queued() == [], message="the second edit flushed")
        assert not client.connected and client.transport == "poll"
    record = await server_record(node, "c1")
    assert record is not None and record["stage"] == "negotiation" and record["phone"] == "+49 5"


async def test_an_unavailable_answer_is_retried_while_the_socket_stays_up(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The defect: Redis down for a moment, the edit answered ``unavailable``,
    Redis back: the edit was still queued 20 s later."""
    caplog.set_level(logging.INFO, logger="fieldpush.sdk.sync")
    async with proxy_to(("127.0.0.1", redis_server.port)) as link:
        settings = node_settings(redis_url=f"redis://127.0.0.1:{link.port}/0", redis_timeout_s=0.5)
        async with running_node(settings) as running:
            await running.crm_put("customer", "c1", name="ACME", owner="alice", team="north")
            store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
            async with alice(running) as client, SyncClient(client, store) as sync:
                await client.wait_connected(scaled(5))
                link.cut()
                try:
                    sync.edit("customer", "c1", {"stage": "signed"})
                    await eventually(
                        lambda: "unavailable" in caplog.text,
                        message="the edit answered unavailable",
                        timeout=10,
                    )
                finally:
                    link.restore()
                assert client.connected and len(store.queued()) == 1
                await eventually(
                    lambda: store.queued() == [], message="the edit flushed once Redis is back"
                )
            record = await server_record(running, "c1")
            assert record is not None and record["stage"] == "signed"


async def test_a_refused_edit_needs_attention_with_every_field_typed(
    node: RunningNode, tmp_path: Path
) -> None:
    """The defect: one invalid field discarded the valid ones from the queue
    and the view; only ``on_result`` saw it."""
    path = tmp_path / "p.db"
    store = SyncStore(path, key=STORE_KEY)
    edit = store.edit("customer", "c1", {"budget": "lots", "phone": "+49 5"})
    async with alice(node) as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        [(_, result)] = await sync.flush()
        assert result.status == "rejected" and result.reason == "validation"
        store.close()
        store = SyncStore(path, key=STORE_KEY)  # the app restarted: the list is kept
        sync.store = store
        [item] = store.needs_attention()
        assert (item.mid, item.type, item.rid) == (edit.mid, "customer", "c1")
        assert item.fields == {"budget": "lots", "phone": "+49 5"}
        assert item.reason == "validation" and item.message and "budget" in item.message
        for name, data in raw_bytes(path).items():  # what the user typed stays sealed
            assert b"lots" not in data and b"+49 5" not in data, name
        fixed = sync.resend(item.mid, {**item.fields, "budget": 5000})
        assert store.needs_attention() == [] and [e.mid for e in store.queued()] == [fixed.mid]
        [(_, again)] = await sync.flush()
        assert again.status == "applied"
        with pytest.raises(KeyError):
            store.resend(item.mid, {"budget": 1})
    record = await server_record(node, "c1")
    assert record is not None and record["budget"] == 5000 and record["phone"] == "+49 5"


async def test_a_partly_refused_edit_keeps_only_the_refused_fields_and_can_be_dismissed(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    store.edit("customer", "c1", {"name": "ACME Ltd", "phone": "+49 7"})  # name: mdm
    store.edit("customer", "c9", None)  # not hers: a refused delete
    async with alice(node) as client, SyncClient(client, store, auto=False) as sync:
        await client.wait_connected(scaled(5))
        results = [result for _, result in await sync.flush()]
    assert [(r.status, r.reason) for r in results] == [
        ("rejected", "mdm_owned"),
        ("rejected", "not_found"),
    ]
    assert results[0].fields == {"name": "mdm_owned", "phone": "applied"}
    first, second = store.needs_attention()
    assert (first.rid, first.fields, first.reason) == ("c1", {"name": "ACME Ltd"}, "mdm_owned")
    assert first.outcomes == {"name": "mdm_owned", "phone": "applied"}
    assert (second.rid, second.fields, second.reason) == ("c9", None, "not_found")
    view = store.record("customer", "c1")
    assert view is not None and view["phone"] == "+49 7" and view["name"] == "ACME"
    store.dismiss(second.mid)
    assert [item.mid for item in store.needs_attention()] == [first.mid]
    with pytest.raises(KeyError):
        store.dismiss(second.mid)


# ------------------------------------------------------------ a hostile server

GARBAGE: list[tuple[int, bytes]] = [
    (200, b"not json at all"),
    (200, b"[1, 2, 3]"),
    (200, b'{"results": "all fine"}'),
    (200, b'{"results": []}'),
    (200, b'{"results": [{"mid": "someone-else", "status": "applied"}]}'),
    (200, b'{"results": [{"mid": "%s", "status": "applied"}, {"mid": "%s", "status": "x"}]}'),
    (200, b'{"results": [{"mid": "%s", "status": "weird"}]}'),
    (200, b'{"results": [{"mid": "%s", "status": "conflict", "record": "hacked"}]}'),
    (200, b'{"results": [{"mid": "%s", "status": "rejected", "fields": {"a": 1}}]}'),
    (200, b'{"results": [{"mid": "%s", "status": "applied"}, {"mid": "%s", "status": "applied"}]}'),
    (500, b'{"error": "exploded"}'),
    (502, b"<html>bad gateway</html>"),
    (200, b'{"results": [' + b"[" * 10_000 + b"]" * 10_000 + b"]}"),
]


@contextlib.asynccontextmanager
async def answering(status: int, body: bytes) -> AsyncIterator[str]:
    """An HTTP server on port 0 that answers every request with ``status`` and ``body``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, len(body), body)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("status", "template"), GARBAGE)
async def test_a_garbage_answer_to_the_http_push_settles_nothing(
    status: int, template: bytes, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "p.db", key=STORE_KEY)
    edit = store.edit("customer", "c1", {"stage": "lost"})
    body = template.replace(b"%s", edit.mid.encode())
    async with answering(status, body) as url:
        client = PushClient(
            f"ws://127.0.0.1:{dead_port()}/v1/ws",
            token="t",
            device="p",
            http_url=url,
            fallback_after_failures=0,
        )
        async with client, SyncClient(client, store, auto=False) as sync:
            with pytest.raises((ProtocolError, PublishError)):
                await sync.flush()
    assert store.queued() == [edit]
    assert store.needs_attention() == []
    assert store.record("customer", "c1") == {"stage": "lost"}
    assert json.dumps(store.records("customer"))  # the store still reads
