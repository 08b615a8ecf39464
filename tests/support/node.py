"""Run a fieldpush node in the test's event loop, on a real socket (port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from fieldpush.app import build_server
from fieldpush.backend.base import Backend
from fieldpush.identity.auth import mint_token
from fieldpush.node import Node
from fieldpush.settings import Settings
from tests.support.timing import eventually, scaled


@dataclasses.dataclass
class RunningNode:
    """A node under test: its URLs, settings and the live :class:`Node` object."""

    url: str
    settings: Settings
    node: Node
    #: ``http://host:port`` of the separate metrics listener (``metrics_port``), else None.
    metrics_url: str | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/v1/ws"  # http -> ws, https -> wss

    def token(
        self, user: str, role: str = "sales", teams: tuple[str, ...] = (), ttl_s: float = 600
    ) -> str:
        return mint_token(self.settings, user=user, role=role, teams=teams, ttl_s=ttl_s)

    async def crm_put(self, record_type: str, rid: str, **fields: Any) -> None:
        """The CRM writes a record (``PUT /v1/records/{type}/{id}``), which must succeed."""
        headers = {"Authorization": f"Bearer {self.token('crm', 'service')}"}
        async with httpx.AsyncClient(base_url=self.url, timeout=scaled(10)) as http:
            reply = await http.put(
                f"/v1/records/{record_type}/{rid}", json={"fields": fields}, headers=headers
            )
        assert reply.status_code == 200, reply.text


def node_settings(**overrides: Any) -> Settings:
    """Settings for a node under test: loopback, any free port, no access log."""
    values: dict[str, Any] = {"port": 0, "access_log": False, "node_id": "test-node"}
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_node(
    settings: Settings | None = None, *, backend: Backend | None = None
) -> AsyncIterator[RunningNode]:
    """Start a node (memory backend unless ``backend`` is given) and stop it after."""
    settings = settings or node_settings()
    server = build_server(settings, backend=backend)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped during startup")
        return bool(server.started)

    try:
        await eventually(started, timeout=10, message="the node did not start")
        node: Node = server.lifespan.state["node"]
        metrics_url = server.lifespan.state["metrics_listener"].url or None
        yield RunningNode(url=server.url, settings=settings, node=node, metrics_url=metrics_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, scaled(15))


#: The ``start_node`` fixture (tests/conftest.py): ``async with start_node(**settings) as node``.
NodeFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningNode]]
