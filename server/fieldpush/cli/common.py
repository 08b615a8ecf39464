"""What the ``fieldpush`` commands share: the ``--config`` flag, settings, and
calls to a running node's HTTP API (``publish``, ``records``, ``users``,
``tokens``): its ``--url`` and ``--token``, and one way to report its answer."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from fieldpush.settings import Settings, load_settings

__all__ = ["DEFAULT_URL", "NodeCall", "add_config", "add_node", "settings_of"]

#: Where ``fieldpush serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:8080"


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML settings file (default: config/fieldpush.toml when present)",
    )


def settings_of(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings: ``overrides`` (flags), environment, the TOML file, defaults."""
    return load_settings(config_path=args.config, overrides=overrides)


def add_node(parser: argparse.ArgumentParser, role: str) -> None:
    """``--config``, ``--url`` and ``--token`` of a command that calls a running node
    with a token of ``role`` (minted with the configured secret when none is given)."""
    add_config(parser)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the node's base URL ({DEFAULT_URL})")
    parser.add_argument(
        "--token",
        help=f"bearer token (default: env FIELDPUSH_TOKEN, else {_article(role)} {role} token "
        "minted with the configured secret)",
    )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class NodeCall:
    """Calls of one command to a running node, as ``user`` with ``role``."""

    def __init__(self, args: argparse.Namespace, command: str, *, user: str, role: str) -> None:
        self.command = command
        self.url = args.url.rstrip("/")
        token = args.token or os.environ.get("FIELDPUSH_TOKEN")
        if not token:
            from fieldpush.identity.auth import mint_token

            # Minting does not listen: the development secret may sign.
            # An hour: long enough for a million-line import or a big export.
            token = mint_token(settings_of(args, dev=True), user=user, role=role, ttl_s=3600)
        self.headers = {"Authorization": f"Bearer {token}"}

    def fail(self, message: str, code: int = 1) -> int:
        print(f"fieldpush {self.command}: {message}", file=sys.stderr)
        return code

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The node's reply (an ``httpx.Response``); raises ``httpx.HTTPError``."""
        import httpx

        return httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=10)

    def show(
        self, method: str, path: str, body: dict[str, Any] | None = None, ok: int = 200
    ) -> int:
        """Call the node and print its JSON reply; 0 when it answered ``ok``, else
        1 with the error on stderr (2 when the node is not reachable... also 1)."""
        import httpx

        try:
            reply = self.request(method, path, body)
        except httpx.HTTPError as exc:
            return self.fail(f"cannot reach {self.url}: {exc}")
        try:
            shown = json.dumps(reply.json(), indent=2)
        except ValueError:
            shown = reply.text
        if reply.status_code != ok:
            return self.fail(f"{reply.status_code} {shown}")
        print(shown)
        return 0
