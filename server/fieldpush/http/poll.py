"""``POST /v1/poll`` (docs/protocol.md section 2): the long-polling fallback.

``{subs: {channel: offset-or-null}, wait_s?, device?}`` -> the events after
each offset, read from the same history as the socket's, waiting up to
``wait_s`` (at most ``poll_max_wait_s``) for the first one. Every channel must
be one the caller may subscribe to. A poll whose user is disabled (or whose
token is revoked) while it waits ends at once with 403 ``account_disabled``
/ ``token_revoked``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.delivery.poll import poll
from fieldpush.errors import AccessRevoked
from fieldpush.http.toolkit import (
    HTTPError,
    caller,
    check_channel,
    device_of,
    forbidden,
    invalid,
    read_fields,
)
from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import may_subscribe
from fieldpush.node import Node
from fieldpush_client.protocol import ErrorCode

__all__ = ["poll_routes"]

_POLL_FIELDS = frozenset({"subs", "wait_s", "device"})


async def poll_route(request: Request) -> Response:
    node, identity = caller(request)
    body = await read_fields(request, node.settings.max_publish_bytes, _POLL_FIELDS)
    subs = body.get("subs")
    if not isinstance(subs, dict) or not subs:
        raise invalid("subs", "must be a non-empty object {channel: offset-or-null}")
    if len(subs) > node.settings.max_publish_channels:
        raise invalid("subs", f"at most {node.settings.max_publish_channels} channels per poll")
    for channel, offset in subs.items():
        check_channel("subs", channel)
        if offset is not None and not isinstance(offset, str):
            raise invalid("subs", f"the offset of {channel} must be a string or null")
        if not may_subscribe(identity, channel):
            raise forbidden(f"not allowed to read {channel}")
    wait_s = body.get("wait_s", 0)
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or wait_s < 0:
        raise invalid("wait_s", "must be a number of seconds >= 0")
    wait_s = min(float(wait_s), node.settings.poll_max_wait_s)
    device = device_of(body, "poll")
    metrics = node.metrics
    metrics.connections_opened["longpoll"] += 1
    metrics.polling[identity.role] += 1
    try:
        return await _wait(node, identity, subs, wait_s, device)
    finally:
        metrics.polling[identity.role] -= 1


async def _wait(
    node: Node, identity: Identity, subs: dict[str, Any], wait_s: float, device: str
) -> Response:
    """The poll's reply: its events, or 403 when the user is disabled meanwhile."""
    with node.accounts.guard(identity) as revoked:
        polling = asyncio.ensure_future(poll(node, subs, wait_s, reader=(identity.user, device)))
        try:
            waits: list[asyncio.Future[Any]] = [polling, revoked]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not polling.done():
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling
        if revoked.done():  # the user was disabled or the token revoked meanwhile
            exc = revoked.exception()
            assert isinstance(exc, AccessRevoked)
            raise HTTPError(403, ErrorCode(exc.reason), str(exc))
        return JSONResponse(polling.result())


poll_routes = [Route("/v1/poll", poll_route, methods=["POST"])]
