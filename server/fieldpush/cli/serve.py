"""``fieldpush serve``: run a node."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from fieldpush.cli.common import add_config, settings_of
from fieldpush.logs import formatter

__all__ = ["add_serve"]


def add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run a node", description="Run a fieldpush node.")
    add_config(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port to listen on, 0 for any free one (default 8080)"
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis://host:port/db: share state with other nodes "
        "(default: the embedded in-memory backend)",
    )
    serve.add_argument("--node-id", help="name of this node in logs and welcome (default host-pid)")
    serve.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="accept the built-in development JWT secret on a non-loopback address",
    )
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="default info"
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text: one escaped line per record (default); json: one JSON object per line",
    )
    _tls_arguments(serve)
    serve.set_defaults(handler=_serve)


def _tls_arguments(serve: argparse.ArgumentParser) -> None:
    """``serve``'s TLS flags (docs/security.md, "TLS"); their settings are ``ssl_*``."""
    tls = serve.add_argument_group("TLS (https:// and wss:// on the same port)")
    tls.add_argument("--ssl-certfile", metavar="PEM", help="certificate chain, server's first")
    tls.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    tls.add_argument(
        "--ssl-ca-certs", metavar="PEM", help="CA certificate(s) that sign client certificates"
    )
    tls.add_argument(
        "--ssl-client-cert",
        choices=["required", "optional"],
        help="with --ssl-ca-certs: refuse clients without a certificate (default required)",
    )


def _tls_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs", "ssl_client_cert")
    return {name: getattr(args, name) for name in names}


def _serve(args: argparse.Namespace) -> int:
    from fieldpush.app import build_server, describe
    from fieldpush.node import checkpointer, make_backend
    from fieldpush.sync.engine import load_sync_config

    settings = settings_of(
        args,
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        node_id=args.node_id,
        dev=args.dev,
        log_level=args.log_level,
        log_format=args.log_format,
        **_tls_overrides(args),
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.log_format))  # input cannot forge a log line
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    load_sync_config(settings)  # a broken schema or mapping stops here, with where and why
    backend = make_backend(settings)  # a forged audit_file stops here, naming the seq
    checkpointer(settings, backend)  # so does an unusable audit_signing_key

    def listening(url: str) -> None:
        print(describe(url, settings, backend.name), flush=True)

    server = build_server(settings, backend=backend, on_listening=listening)
    # uvicorn handles SIGTERM/SIGINT while it runs (graceful shutdown) and then
    # re-raises the signal with the handler it found: make that an exit with 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_after_shutdown)
    server.run()
    return 0 if server.started else 1


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)
