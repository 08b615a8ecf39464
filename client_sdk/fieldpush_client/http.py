"""HTTP calls for dispatchers, the CRM and tests: publish, receipts, presence,
poll, ack and the sync push.

async with DispatcherClient("http://127.0.0.1:8080", token) as dispatcher:
    reply = await dispatcher.publish(["user:alice"], "work_order.urgent", {"order": 7},
                                     priority="critical", idempotency_key="wo-7")
    receipts = await dispatcher.receipts(reply.id)
    online = await dispatcher.presence_of_user("alice")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from fieldpush_client.errors import PublishError
from fieldpush_client.protocol import EventMsg
from fieldpush_client.tasks import run_to_end
from fieldpush_client.tls import SSLOption, ssl_context

__all__ = [
    "ChannelPresence",
    "DevicePresence",
    "DispatcherClient",
    "PollReply",
    "PublishReply",
    "Receipt",
    "Receipts",
    "UserPresence",
]


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


@dataclass(frozen=True, slots=True)
class Receipt:
    """One recipient of a tracked event; times in ms since the epoch, ``None`` until then."""

    user: str
    device: str | None
    delivered_at: int | None
    acked_at: int | None


@dataclass(frozen=True, slots=True)
class Receipts:
    id: str
    kind: str
    published_at: int
    deadline_at: int | None
    recipients: list[Receipt]

    def of(self, user: str) -> Receipt:
        """The receipt of ``user`` (``KeyError`` if not a recipient)."""
        for receipt in self.recipients:
            if receipt.user == user:
                return receipt
        raise KeyError(user)


@dataclass(frozen=True, slots=True)
class DevicePresence:
    device: str
    session: str
    node: str
    since: int
    last_seen: int


@dataclass(frozen=True, slots=True)
class UserPresence:
    user: str
    online: bool
    last_seen: int | None
    devices: list[DevicePresence]


@dataclass(frozen=True, slots=True)
class ChannelPresence:
    channel: str
    #: User id → that user's devices on the channel, oldest first.
    users: dict[str, list[DevicePresence]]


def _devices(items: list[dict[str, Any]]) -> list[DevicePresence]:
    return [
        DevicePresence(
            device=item["device"],
            session=item["session"],
            node=item["node"],
            since=item["since"],
            last_seen=item["last_seen"],
        )
        for item in items
    ]


class DispatcherClient:
    """Calls a node's HTTP API with one bearer token. Refusals raise
    :class:`~fieldpush_client.errors.PublishError` with the HTTP status and error code.

    ``https://`` verifies the node's certificate against the system's CAs, or
    against ``ssl`` (a CA file or an :class:`ssl.SSLContext`, see
    :mod:`fieldpush_client.tls`); with an ``http`` client of the caller's own,
    its TLS settings are the caller's and ``ssl`` must not be given."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 35.0,
        http: httpx.AsyncClient | None = None,
        ssl: SSLOption | None = None,
    ) -> None:
        if http is not None and ssl is not None:
            raise ValueError("give ssl or an http client (with its own verify=), not both")
        context = ssl_context(ssl)
        self._own = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout_s, verify=True if context is None else context
        )
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __aenter__(self) -> DispatcherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it (not one passed as
        ``http``), with every connection of its pool. The close runs to its
        end even if the caller is cancelled meanwhile (the cancellation is
        re-raised afterwards), so that it leaves no socket open. Requests
        still under way on the client should have ended first: a connection
        still being opened is not in the pool yet, and stays open."""
        if self._own:
            await run_to_end(self._http.aclose())

    async def _post(self, path: str, body: dict[str, Any], expected: int) -> dict[str, Any]:
        reply = await self._http.post(self._base + path, json=body, headers=self._headers)
        return self._check(reply, expected)

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        reply = await self._http.get(self._base + path, params=params, headers=self._headers)
        return self._check(reply, 200)

    @staticmethod
    def _check(reply: httpx.Response, expected: int) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = reply.json()
        except (ValueError, RecursionError):  # not JSON, or nested beyond the parser
            payload = {}
        if reply.status_code != expected:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                error = {}
            raise PublishError(
                reply.status_code,
                str(error.get("code", "unknown")),
                str(error.get("message", reply.text)),
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

    async def receipts(self, event_id: str) -> Receipts:
        """``GET /v1/events/{id}/receipts`` of a critical event (404: not tracked)."""
        reply = await self._get(f"/v1/events/{quote(event_id, safe='')}/receipts")
        return Receipts(
            id=reply["id"],
            kind=reply["kind"],
            published_at=reply["published_at"],
            deadline_at=reply["deadline_at"],
            recipients=[
                Receipt(
                    user=item["user"],
                    device=item["device"],
                    delivered_at=item["delivered_at"],
                    acked_at=item["acked_at"],
                )
                for item in reply["recipients"]
            ],
        )

    async def presence_of_channel(self, channel: str) -> ChannelPresence:
        """``GET /v1/presence?channel=``: who is online on ``channel``, cluster-wide."""
        reply = await self._get("/v1/presence", {"channel": channel})
        return ChannelPresence(
            channel=reply["channel"],
            users={item["user"]: _devices(item["devices"]) for item in reply["users"]},
        )

    async def presence_of_user(self, user: str) -> UserPresence:
        """``GET /v1/presence/users/{id}``: whether ``user`` is online, and where."""
        reply = await self._get(f"/v1/presence/users/{quote(user, safe='')}")
        return UserPresence(
            user=reply["user"],
            online=reply["online"],
            last_seen=reply["last_seen"],
            devices=_devices(reply["devices"]),
        )

    async def ack(self, ids: list[str], device: str) -> None:
        """``POST /v1/ack``: the caller's ``device`` acks ``ids`` (recorded when this returns)."""
        await self._post("/v1/ack", {"ids": ids, "device": device}, 204)

    async def sync_push(self, body: dict[str, Any]) -> Any:
        """``POST /v1/sync/push`` of ``body`` (``{mutations, device?}``): the
        decoded answer, unchecked ({} if it is not JSON)."""
        return await self._post("/v1/sync/push", body, 200)

    async def poll(
        self, subs: dict[str, str | None], wait_s: float = 0, device: str | None = None
    ) -> PollReply:
        """``POST /v1/poll``: events after each offset, waiting up to ``wait_s``.
        ``device`` names the polling device in receipts."""
        body: dict[str, Any] = {"subs": subs, "wait_s": wait_s}
        if device is not None:
            body["device"] = device
        reply = await self._post("/v1/poll", body, 200)
        return PollReply(
            events=[EventMsg.from_dict(item) for item in reply["events"]],
            offsets=reply["offsets"],
            recovered=reply["recovered"],
        )
