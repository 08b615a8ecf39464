"""HTTP calls for dispatchers, the CRM and tests: publish and poll.

async with DispatcherClient("http://127.0.0.1:8080", token) as dispatcher:
    reply = await dispatcher.publish(["user:alice"], "work_order.urgent", {"order": 7},
                                     priority="critical", idempotency_key="wo-7")
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from client_sdk.errors import PublishError
from client_sdk.protocol import EventMsg

__all__ = ["DispatcherClient", "PollReply", "PublishReply"]


@dataclass(frozen=True, slots=True)
class PublishReply:
    """The event's id and its offset in each channel."""

    id: str
    offsets: dict[str, str]


@dataclass(frozen=True, slots=True)
class PollReply:
    events: list[EventMsg]
    offsets: dict[str, str]
    recovered: dict[str, bool]


class DispatcherClient:
    """Calls a node's HTTP API with one bearer token. Refusals raise
    :class:`~client_sdk.errors.PublishError` with the HTTP status and error code."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 35.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._own = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __aenter__(self) -> DispatcherClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any], expected: int) -> dict[str, Any]:
        reply = await self._http.post(self._base + path, json=body, headers=self._headers)
        try:
            payload: dict[str, Any] = reply.json()
        except ValueError:
            payload = {}
        if reply.status_code != expected:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise PublishError(
                reply.status_code, error.get("code", "unknown"), error.get("message", reply.text)
            )
        return payload

    async def publish(
        self,
        channels: list[str],
        kind: str,
        data: dict[str, Any],
        *,
        priority: str = "normal",
        idempotency_key: str | None = None,
        ack_deadline_s: float | None = None,
    ) -> PublishReply:
        """``POST /v1/publish``: the event is stored when this returns."""
        body: dict[str, Any] = {
            "channels": channels,
            "kind": kind,
            "priority": priority,
            "data": data,
        }
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if ack_deadline_s is not None:
            body["ack_deadline_s"] = ack_deadline_s
        reply = await self._post("/v1/publish", body, 201)
        return PublishReply(reply["id"], reply["offsets"])

    async def poll(self, subs: dict[str, str | None], wait_s: float = 0) -> PollReply:
        """``POST /v1/poll``: events after each offset, waiting up to ``wait_s``."""
        reply = await self._post("/v1/poll", {"subs": subs, "wait_s": wait_s}, 200)
        return PollReply(
            events=[EventMsg.from_dict(item) for item in reply["events"]],
            offsets=reply["offsets"],
            recovered=reply["recovered"],
        )
