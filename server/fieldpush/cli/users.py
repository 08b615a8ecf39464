"""``fieldpush users disable|enable|show ID``: accounts, through a running node
(``/v1/admin/users/{id}``; docs/security.md, "Revocation")."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from fieldpush.cli.common import NodeCall, add_node

__all__ = ["add_users"]

_ACTIONS = {
    "disable": (
        "POST",
        "/disable",
        "refuse the user's tokens on every node (403 account_disabled) and close their "
        "sockets (4003); tokens issued until now stay refused after enable",
    ),
    "enable": ("POST", "/enable", "let the user in again, with a new token"),
    "show": ("GET", "", "the user's state and the devices online"),
}


def add_users(commands: Any) -> None:
    users = commands.add_parser(
        "users",
        help="disable, enable or show a user through a running node",
        description="Accounts of a running cluster (docs/security.md, 'Revocation').",
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    for action, (_, _, summary) in _ACTIONS.items():
        parser = actions.add_parser(
            action, help=summary, description=summary[:1].upper() + summary[1:] + "."
        )
        add_node(parser, "admin")
        parser.add_argument("id", help="the user id (the tokens' 'sub')")
        parser.set_defaults(handler=_users)


def _users(args: argparse.Namespace) -> int:
    method, suffix, _ = _ACTIONS[args.users_command]
    call = NodeCall(args, f"users {args.users_command}", user="cli", role="admin")
    return call.show(method, f"/v1/admin/users/{quote(args.id, safe='')}{suffix}")
