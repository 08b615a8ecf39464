"""What the HTTP API tests share: a client for the module's ``node`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.node import RunningNode


@pytest.fixture
async def http(node: RunningNode) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the ``node`` that the test module defines."""
    async with httpx.AsyncClient(base_url=node.url) as client:
        yield client
