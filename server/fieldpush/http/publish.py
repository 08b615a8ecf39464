"""``POST /v1/publish`` (docs/protocol.md section 2): check, store and announce one event.

Publisher roles only (403 before the body is read); each channel must be one
the role may publish to. The event is durable before the 201: it is in every
channel's history (:meth:`fieldpush.backend.base.Backend.publish`). With an
``idempotency_key`` a retry answers the first result; the same key with
another body is 409. ``critical`` events are tracked, with the publish's
``ack_deadline_s`` or the kind's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fieldpush.backend.base import Idempotency, PublishRequest, Tracking
from fieldpush.errors import BackendUnavailable, IdempotencyConflict
from fieldpush.http.toolkit import (
    HTTPError,
    authenticate,
    check_channel,
    decode_body,
    forbidden,
    invalid,
    read_body,
    reject_unknown,
)
from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import PUBLISHER_ROLES, may_publish
from fieldpush.node import Node
from fieldpush.settings import Settings
from fieldpush_client.protocol import (
    MAX_ACK_DEADLINE_S,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_KIND_LENGTH,
    ErrorCode,
    Priority,
    encode_body,
)

__all__ = ["PublishEndpoint", "PublishInput", "parse_publish", "publish_routes"]

log = logging.getLogger("fieldpush.api")

_PUBLISH_FIELDS = frozenset(
    {"channels", "kind", "priority", "data", "idempotency_key", "ack_deadline_s"}
)
_PRIORITIES = frozenset(p.value for p in Priority)


@dataclass(frozen=True, slots=True)
class PublishInput:
    """A valid publish body."""

    channels: tuple[str, ...]
    kind: str
    priority: str
    data: dict[str, Any]
    idempotency_key: str | None
    ack_deadline_s: float | None

    def fingerprint(self) -> str:
        """Identifies the body for the idempotency check (the key excluded)."""
        canonical = json.dumps(
            [self.channels, self.kind, self.priority, self.data, self.ack_deadline_s],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_publish(body: dict[str, Any], max_channels: int) -> PublishInput:
    """Validate a publish body; raise a 422 :class:`HTTPError` naming the field."""
    reject_unknown(body, _PUBLISH_FIELDS)
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise invalid("channels", "must be a non-empty list of channel names")
    if len(channels) > max_channels:
        raise invalid("channels", f"at most {max_channels} channels per publish")
    for channel in channels:
        check_channel("channels", channel)
    if len(set(channels)) != len(channels):
        raise invalid("channels", "lists a channel twice")
    kind = body.get("kind")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_KIND_LENGTH:
        raise invalid("kind", f"must be a string of 1 to {MAX_KIND_LENGTH} characters")
    priority = body.get("priority", Priority.NORMAL.value)
    if not isinstance(priority, str) or priority not in _PRIORITIES:
        raise invalid("priority", f"must be one of {', '.join(p.value for p in Priority)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise invalid("data", "must be a JSON object")
    key = body.get("idempotency_key")
    if key is not None and (
        not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH
    ):
        raise invalid(
            "idempotency_key", f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )
    deadline = body.get("ack_deadline_s")
    if deadline is not None:
        if priority != Priority.CRITICAL.value:
            raise invalid("ack_deadline_s", "is only allowed for critical events")
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not 0 < deadline <= MAX_ACK_DEADLINE_S
        ):
            raise invalid(
                "ack_deadline_s",
                f"must be a positive number of seconds, at most {MAX_ACK_DEADLINE_S}",
            )
    return PublishInput(
        channels=tuple(channels),
        kind=kind,
        priority=priority,
        data=data,
        idempotency_key=key,
        ack_deadline_s=float(deadline) if deadline is not None else None,
    )


def _tracking(settings: Settings, body: PublishInput) -> Tracking | None:
    """Critical events are tracked; their deadline: the publish's, else the kind's."""
    if body.priority != Priority.CRITICAL.value:
        return None
    deadline_s = body.ack_deadline_s
    if deadline_s is None:
        deadline_s = settings.ack_deadlines_s.get(body.kind, settings.default_ack_deadline_s)
    return Tracking(kind=body.kind, ack_deadline_ms=round(deadline_s * 1000))


async def _publish(
    node: Node, identity: Identity, raw: dict[str, Any], started: float
) -> dict[str, Any]:
    """Check, store and announce one publish by a publisher, received at
    ``started`` (``time.perf_counter()``); the 201 body. Raises HTTPError."""
    settings = node.settings
    body = parse_publish(raw, settings.max_publish_channels)
    node.audit.require()
    event_id = node.new_event_id()
    fields: dict[str, tuple[object, object]] = {
        "kind": (None, body.kind),
        "priority": (None, body.priority),
        "channels": (None, list(body.channels)),
    }

    def audit(outcome: str, target: str = event_id) -> None:
        node.audit.record(
            actor=identity.user, role=identity.role,
            action="publish", target=f"event/{target}", fields=fields, outcome=outcome,
        )  # fmt: skip

    for channel in body.channels:
        if not may_publish(identity, channel):
            audit("refused:forbidden")
            raise forbidden(f"role {identity.role!r} may not publish to {channel}")
    idempotency = None
    if body.idempotency_key is not None:
        idempotency = Idempotency(identity.user, body.idempotency_key, body.fingerprint())
    try:
        result = await node.backend.publish(
            PublishRequest(
                channels=body.channels,
                event_id=event_id,
                priority=body.priority,
                body=encode_body(event_id, body.kind, body.priority, body.data),
                idempotency=idempotency,
                tracking=_tracking(settings, body),
            )
        )
    except BackendUnavailable:
        audit("failed:backend_unavailable")
        log.warning("publish by %s refused: backend unavailable", identity.user)
        raise HTTPError(
            503,
            ErrorCode.UNAVAILABLE,
            "backend unavailable; the event may or may not be stored: "
            "retry with the same idempotency_key",
        ) from None
    except IdempotencyConflict:
        audit("refused:idempotency_conflict")
        raise HTTPError(
            409, ErrorCode.CONFLICT, "idempotency_key was already used with a different body"
        ) from None
    audit("ok:duplicate" if result.duplicate else "ok", result.id)
    metrics = node.metrics
    elapsed_s = time.perf_counter() - started
    metrics.publish_duration[body.priority].observe(elapsed_s)
    if not result.duplicate:
        metrics.publishes[body.priority] += 1
        for channel in body.channels:
            metrics.published[channel.partition(":")[0]] += 1
        node.publish_log.published(result.id, body.kind, body.priority, body.channels, elapsed_s)
    return {"id": result.id, "offsets": result.offsets}


class PublishEndpoint:
    """``POST /v1/publish`` as a plain ASGI app.

    The busiest HTTP call, so it skips Starlette's request, response and
    exception layers (measured: about a third of the CPU of a publish); the
    app factory routes it here before Starlette (:func:`fieldpush.app.create_app`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        node: Node = scope["state"]["node"]
        headers: dict[str, str] = {}
        try:
            authorization: list[str] = []
            declared = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization.append(value.decode("latin-1"))
                elif name == b"content-length" and value.isdigit():
                    declared = int(value)
            client = scope.get("client")
            source = str(client[0]) if client else ""
            identity = authenticate(
                node.verifier,
                authorization,
                "POST /v1/publish",
                lambda reason: node.login_refusals.note(source, reason),
            )
            if identity.role not in PUBLISHER_ROLES:  # before reading the body
                node.audit.record(
                    actor=identity.user, role=identity.role, action="publish", target="event",
                    outcome="refused:forbidden",
                )  # fmt: skip
                raise forbidden(f"role {identity.role!r} may not publish")
            raw = await read_body(receive, declared, node.settings.max_publish_bytes)
            status, reply = 201, await _publish(node, identity, decode_body(raw), started)
        except HTTPError as exc:
            node.metrics.publish_errors[exc.code.value] += 1
            status, reply, headers = exc.status, exc.body, exc.headers
        payload = json.dumps(reply, separators=(",", ":")).encode()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})


publish_routes = [Route("/v1/publish", PublishEndpoint(), methods=["POST"])]
