"""``POST /v1/poll`` (docs/protocol.md section 2): the long-polling fallback.

``{subs: {channel: offset-or-null}, wait_s?, device?}`` -> the events after
each offset, read from the same history as the socket's, waiting up to
``wait_s`` (at most ``poll_max_wait_s``) for the first one. Every channel must
be one the caller may subscribe to.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fieldpush.delivery.poll import poll
from fieldpush.http.toolkit import (
    caller,
    check_channel,
    device_of,
    forbidden,
    invalid,
    read_fields,
)
from fieldpush.identity.policy import may_subscribe

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
    reply = await poll(node, subs, wait_s, reader=(identity.user, device))
    return JSONResponse(reply)


poll_routes = [Route("/v1/poll", poll_route, methods=["POST"])]
