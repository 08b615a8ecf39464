"""``fieldpush token`` (mint a development token) and ``fieldpush tokens revoke``
(through a running node: ``POST /v1/admin/tokens/revoke``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fieldpush.cli.common import NodeCall, add_config, add_node, settings_of

__all__ = ["add_tokens"]

ROLE_CHOICES = ["sales", "after_sales", "supervisor", "admin", "dispatcher", "service"]


def add_tokens(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="mint a development token",
        description="Print a signed JWT (last line of stdout) with the configured secret.",
    )
    add_config(token)
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument("--role", required=True, choices=ROLE_CHOICES)
    token.add_argument("--teams", default="", help="comma-separated team ids")
    token.add_argument(
        "--ttl", type=int, metavar="SECONDS", help="lifetime (default token_ttl_s, 3600)"
    )
    token.set_defaults(handler=_mint)

    tokens = commands.add_parser(
        "tokens",
        help="revoke tokens through a running node",
        description="Tokens of a running cluster (docs/security.md, 'Revocation').",
    )
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    revoke = actions.add_parser(
        "revoke",
        help="refuse one token (--jti) or a user's tokens issued before a time (--user)",
        description="POST /v1/admin/tokens/revoke: every node refuses the token(s) from now "
        "on (403 token_revoked) and closes their sockets (4003).",
    )
    add_node(revoke, "admin")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token's 'jti' claim")
    which.add_argument("--user", help="every token of this user issued before --issued-before")
    revoke.add_argument(
        "--issued-before",
        type=int,
        metavar="MS",
        help="with --user: a time in ms since the epoch (default: now)",
    )
    revoke.set_defaults(handler=_revoke)


def _mint(args: argparse.Namespace) -> int:
    from fieldpush.identity.auth import mint_token

    settings = settings_of(args, dev=True)  # minting does not listen: the dev secret may sign
    teams = [t.strip() for t in args.teams.split(",") if t.strip()]
    try:
        token = mint_token(settings, user=args.user, role=args.role, teams=teams, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"fieldpush token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    call = NodeCall(args, "tokens revoke", user="cli", role="admin")
    if args.jti is not None:
        if args.issued_before is not None:
            return call.fail("--issued-before goes with --user, not --jti", 2)
        return call.show("POST", "/v1/admin/tokens/revoke", {"jti": args.jti})
    body: dict[str, Any] = {"user": args.user}
    if args.issued_before is not None:
        body["issued_before"] = args.issued_before
    return call.show("POST", "/v1/admin/tokens/revoke", body)
