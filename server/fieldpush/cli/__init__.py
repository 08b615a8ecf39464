"""The ``fieldpush`` command: ``serve``, ``token``, ``publish``, ``records import``,
``users``, ``tokens revoke``, ``devices``, ``audit``, ``export``; one module per command
(docs/configuration.md, docs/security.md)."""

from __future__ import annotations

import argparse
import os
import sys

from fieldpush import __version__
from fieldpush.cli.audit import add_audit
from fieldpush.cli.devices import add_devices
from fieldpush.cli.export import add_export
from fieldpush.cli.publish import add_publish
from fieldpush.cli.records import add_records
from fieldpush.cli.serve import add_serve
from fieldpush.cli.tokens import add_tokens
from fieldpush.cli.users import add_users
from fieldpush.errors import ConfigError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldpush",
        description="Real-time push and delta-sync server for field sales and service phones.",
        epilog="Settings: flags > FIELDPUSH_* environment variables > TOML file > defaults. "
        "See docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"fieldpush {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve(commands)
    add_tokens(commands)
    add_publish(commands)
    add_records(commands)
    add_users(commands)
    add_devices(commands)
    add_audit(commands)
    add_export(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
    except ConfigError as exc:
        print(f"fieldpush {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
