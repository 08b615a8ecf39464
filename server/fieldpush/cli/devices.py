"""``fieldpush devices list USER`` and ``fieldpush devices wipe USER DEVICE``:
the device registry and remote wipe, through a running node
(``/v1/admin/users/{id}/devices``; docs/protocol.md 2.9)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from fieldpush.cli.common import NodeCall, add_node

__all__ = ["add_devices"]


def add_devices(commands: Any) -> None:
    devices = commands.add_parser(
        "devices",
        help="list a user's devices or wipe one through a running node",
        description="The device registry and remote wipe (docs/protocol.md 2.9).",
    )
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="every device of the user: first and last seen, node, app, state",
        description="GET /v1/admin/users/{id}/devices.",
    )
    add_node(listing, "admin")
    listing.add_argument("user", help="the user id (the tokens' 'sub')")
    listing.set_defaults(handler=_list)
    wipe = actions.add_parser(
        "wipe",
        help="erase the device's local data: it gets 'wipe' now or at its next hello",
        description="POST /v1/admin/users/{id}/devices/{device}/wipe: the device erases its "
        "store and confirms; from then on it cannot connect (4003).",
    )
    add_node(wipe, "admin")
    wipe.add_argument("user", help="the user id (the tokens' 'sub')")
    wipe.add_argument("device", help="the device id (its hello's 'device')")
    wipe.set_defaults(handler=_wipe)


def _path(user: str, *rest: str) -> str:
    return "/".join(["/v1/admin/users", quote(user, safe=""), *(quote(p, safe="") for p in rest)])


def _list(args: argparse.Namespace) -> int:
    call = NodeCall(args, "devices list", user="cli", role="admin")
    return call.show("GET", _path(args.user, "devices"))


def _wipe(args: argparse.Namespace) -> int:
    call = NodeCall(args, "devices wipe", user="cli", role="admin")
    return call.show("POST", _path(args.user, "devices", args.device, "wipe"), ok=202)
