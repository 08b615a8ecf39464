"""Shared fixtures, one section per subject."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ServeProcess
from tests.support.cluster import start_node
from tests.support.redis_server import RedisServer

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


# ----------------------------------------------------------------------------- e2e


@pytest.fixture
def cluster(redis_url: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    """Two ``fieldpush serve`` nodes on the shared redis-server; both must exit 0."""
    first, second = start_node(redis_url, "node-a"), start_node(redis_url, "node-b")
    try:
        yield first, second
    finally:
        assert first.stop() == 0, first.output
        assert second.stop() == 0, second.output
