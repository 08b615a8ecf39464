"""The long-poll fallback leaves no socket open behind it: its HTTP client
closes only once no request on it is still under way, on every exit path.

Against a raw HTTP server on port 0 that plays the node's poll and ack API,
so that the test decides when each request is answered; the WebSocket URL
points at a port nobody listens on, so the client stays on the fallback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import socket
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore
import pytest

from fieldpush_client import DispatcherClient, PushClient, backoff_delays
from tests.support.timing import eventually, scaled

#: The clients' longest poll wait: a shorter one is the last poll of a window.
_POLL_WAIT_S = 0.2

_EVENT = {
    "channel": "user:alice",
    "offset": "1",
    "id": "e1",
    "kind": "work_order.urgent",
    "priority": "critical",
    "ts": 1,
    "data": {},
}


@dataclass
class FakeNode:
    """The HTTP API of a node: the first poll answers one critical event at
    once; the others wait ``wait_s`` and answer nothing."""

    port: int = 0
    polls: int = 0
    acks: list[list[str]] = field(default_factory=list)
    #: Set when the connection that carried the polls is closed by the client.
    poll_connection_closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when a poll whose wait reaches the end of the window was answered.
    window_over: asyncio.Event = field(default_factory=asyncio.Event)
    #: The connections' writers and handlers, closed and awaited at the end.
    connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[writer] = task
        carried_polls = False
        try:
            while request := await _read_request(reader):
                path, body = request
                if path == "/v1/poll":
                    carried_polls = True
                    await self._poll(writer, body)
                else:
                    self.acks.append(body["ids"])
                    writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request
        finally:
            if carried_polls:
                self.poll_connection_closed.set()
            writer.close()

    async def _poll(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        self.polls += 1
        events = [_EVENT] if self.polls == 1 else []
        if events:
            offsets = {channel: "1" for channel in body["subs"]}
        else:
            await asyncio.sleep(body["wait_s"])
            offsets = {channel: offset or "1" for channel, offset in body["subs"].items()}
        reply = json.dumps(
            {"events": events, "offsets": offsets, "recovered": dict.fromkeys(offsets, True)}
        ).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(reply), reply)
        )
        if not events and body["wait_s"] < _POLL_WAIT_S:
            self.window_over.set()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]] | None:
    """One request's path and JSON body; None at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = head.decode().split("\r\n")
    headers = {
        name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    return lines[0].split()[1], json.loads(await reader.readexactly(length))


@asynccontextmanager
async def fake_node() -> AsyncIterator[FakeNode]:
    """A :class:`FakeNode` listening on 127.0.0.1; at the end its connections
    are closed and their handlers awaited."""
    node = FakeNode()
    server = await asyncio.start_server(node.serve, "127.0.0.1", 0)
    node.port = server.sockets[0].getsockname()[1]
    try:
        yield node
    finally:
        server.close()
        for writer in node.connections:
            writer.close()
        await asyncio.gather(*node.connections.values())
        await server.wait_closed()


def _closed_port() -> int:
    """A local port nobody listens on (the socket connections fail at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _token(user: str) -> str:
    """A JWT-shaped token whose subject the fallback reads (nobody verifies it here)."""
    claims = base64.urlsafe_b64encode(json.dumps({"sub": user}).encode()).decode().rstrip("=")
    return f"e30.{claims}.sig"


def _assert_no_unclosed_socket() -> None:
    """No socket or transport left for the garbage collector to find open."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, [str(w.message) for w in unclosed]


async def test_the_window_ending_during_an_ack_connect_leaks_no_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll window ends while the ack of a handled event is still
    connecting: the fallback's HTTP client closes only after that ack (which
    is sent), so no connection is left behind unclosed."""
    gate = asyncio.Event()
    connects = 0
    connect = httpcore.AnyIOBackend.connect_tcp

    async def hold_the_second_connect(
        backend: httpcore.AnyIOBackend, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        nonlocal connects
        connects += 1
        if connects == 2:  # the ack's: the long poll holds the first connection
            await gate.wait()
        return await connect(backend, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", hold_the_second_connect)
    async with fake_node() as node:
        client = PushClient(
            f"ws://127.0.0.1:{_closed_port()}/v1/ws",
            token=_token("alice"),
            device="d1",
            http_url=f"http://127.0.0.1:{node.port}",
            backoff=lambda: backoff_delays(base_s=0.01, cap_s=0.05),
            fallback_after_failures=1,
            socket_retry_s=0.5,
            poll_wait_s=_POLL_WAIT_S,
        )
        async with client:
            events = client.events()
            assert (await asyncio.wait_for(anext(events), scaled(5))).id == "e1"
            handling = asyncio.get_running_loop().create_task(anext(events))  # handles e1
            try:
                await asyncio.wait_for(node.window_over.wait(), scaled(5))
                # A client that closes its HTTP client now closes the polls'
                # connection at once; one that waits for the ack does not.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(node.poll_connection_closed.wait(), scaled(0.3))
                gate.set()
                await eventually(lambda: node.acks, message="the ack is sent")
            finally:
                handling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handling
        assert node.acks == [["e1"]]
    _assert_no_unclosed_socket()


async def test_a_dispatcher_cancelled_while_it_closes_still_closes_every_connection() -> None:
    """``aclose`` cancelled right after it began closing a pool of two
    connections: it closes both, then re-raises the cancellation."""
    async with fake_node() as node:
        disp = DispatcherClient(f"http://127.0.0.1:{node.port}", _token("disp"))
        await asyncio.gather(disp.ack(["a"], "d1"), disp.ack(["b"], "d1"))  # two connections
        assert sorted(node.acks) == [["a"], ["b"]]
        closing = asyncio.get_running_loop().create_task(disp.aclose())
        await asyncio.sleep(0)  # closing the first connection
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    _assert_no_unclosed_socket()
