"""Shared fixtures, one section per subject (tests/README.md lists them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import BackendFactory, Sink, make_backend, start_backend
from tests.support.cli import ServeProcess
from tests.support.cluster import start_node as serve_node
from tests.support.node import NodeFactory, RunningNode, node_settings, running_node
from tests.support.redis_server import RedisServer
from tests.support.tls import TLSFiles, make_certificates

# ----------------------------------------------------------------------------- redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run (tests/support/redis_server.py)."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied (FLUSHALL) before the test."""
    redis_server.flush()
    return redis_server.url


# ----------------------------------------------------------------------- backend kind


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The one fixture that runs a test on each backend: ``memory``, then ``redis``
    (the shared redis-server, emptied before the test)."""
    kind: str = request.param
    return kind


@pytest.fixture
def backend_url(backend_kind: str, request: pytest.FixtureRequest) -> str | None:
    """The emptied shared server's URL for ``redis``; None for ``memory``."""
    if backend_kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return None


@pytest.fixture
def backend_factory(backend_kind: str, backend_url: str | None) -> BackendFactory:
    """``async with backend_factory(**limits) as (backend, sink)``: a started
    backend of ``backend_kind`` (tests/support/backends.py builds and starts it),
    closed afterwards; ``sink`` records its live feed, kick requests and access
    announcements."""

    @contextlib.asynccontextmanager
    async def open_backend(**limits: Any) -> AsyncIterator[tuple[Any, Sink]]:
        sink = Sink()
        backend = make_backend(backend_kind, backend_url, **limits)
        await start_backend(backend, sink, on_kick=sink.on_kick, access=sink)
        try:
            yield backend, sink
        finally:
            await backend.close()

    return open_backend


@pytest.fixture
async def backend(backend_factory: BackendFactory) -> AsyncIterator[tuple[Any, Sink]]:
    """A started backend of each kind with the default limits, and its sink."""
    async with backend_factory() as started:
        yield started


# --------------------------------------------------------------------- in-process nodes


@pytest.fixture
def start_node(backend_url: str | None) -> NodeFactory:
    """``async with start_node(**settings) as node``: an in-process node on a real
    socket, on the backend of ``backend_kind``. Nodes started in one test share
    that backend's Redis. (Memory-only tests call ``running_node`` directly.)"""

    @contextlib.asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[RunningNode]:
        async with running_node(node_settings(redis_url=backend_url, **settings)) as node:
            yield node

    return start


# ----------------------------------------------------------------------------- e2e


@pytest.fixture
def cluster(redis_url: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two ``fieldpush serve`` nodes on the shared redis-server; both must exit 0."""
    first, second = serve_node(redis_url, "node-a"), serve_node(redis_url, "node-b")
    try:
        yield first, second
    finally:
        assert first.stop() == 0, first.output
        assert second.stop() == 0, second.output


# ------------------------------------------------------------------------------- tls


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A throwaway CA, a server certificate for localhost/127.0.0.1/::1, a client CA
    and a client certificate, made once per run (tests/support/tls.py)."""
    return make_certificates(Path(tmp_path_factory.mktemp("tls")))


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed when missing (tests/support/browser.py)."""
    from tests.support.browser import chromium_binary

    return chromium_binary()
