"""``fieldpush publish``: an event through a running node (``POST /v1/publish``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fieldpush.cli.common import NodeCall, add_node

__all__ = ["add_publish"]


def add_publish(commands: Any) -> None:
    publish = commands.add_parser(
        "publish",
        help="publish an event through a running node",
        description="POST /v1/publish to a running node and print its reply.",
    )
    add_node(publish, "dispatcher")
    publish.add_argument(
        "--channel", action="append", required=True, help="target channel (repeatable)"
    )
    publish.add_argument("--kind", required=True, help="event kind, e.g. work_order.urgent")
    publish.add_argument(
        "--priority", default="normal", choices=["critical", "high", "normal", "low"]
    )
    publish.add_argument("--data", default="{}", help="event data as a JSON object")
    publish.add_argument("--idempotency-key", help="makes retries safe")
    publish.set_defaults(handler=_publish)


def _publish(args: argparse.Namespace) -> int:
    call = NodeCall(args, "publish", user="cli", role="dispatcher")
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        return call.fail(f"--data is not JSON: {exc}", 2)
    body: dict[str, Any] = {
        "channels": args.channel,
        "kind": args.kind,
        "priority": args.priority,
        "data": data,
    }
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    return call.show("POST", "/v1/publish", body, ok=201)
