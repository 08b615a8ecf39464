"""The ``fieldpush`` command: ``serve``, ``token``, ``publish``, ``records import``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from fieldpush import __version__
from fieldpush.errors import ConfigError
from fieldpush.logs import LOG_FORMAT, EscapingFormatter
from fieldpush.settings import Settings, load_settings

__all__ = ["main"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="TOML settings file (default: config/fieldpush.toml when present)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fieldpush",
        description="Real-time push and delta-sync server for field sales and service phones.",
        epilog="Settings: flags > FIELDPUSH_* environment variables > TOML file > defaults. "
        "See docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"fieldpush {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a node", description="Run a fieldpush node.")
    _common(serve)
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
    _tls_arguments(serve)

    token = commands.add_parser(
        "token",
        help="mint a development token",
        description="Print a signed JWT (last line of stdout) with the configured secret.",
    )
    _common(token)
    token.add_argument("--user", required=True, help="user id (the 'sub' claim)")
    token.add_argument(
        "--role",
        required=True,
        choices=["sales", "after_sales", "supervisor", "admin", "dispatcher", "service"],
    )
    token.add_argument("--teams", default="", help="comma-separated team ids")
    token.add_argument(
        "--ttl", type=int, metavar="SECONDS", help="lifetime (default token_ttl_s, 3600)"
    )

    publish = commands.add_parser(
        "publish",
        help="publish an event through a running node",
        description="POST /v1/publish to a running node and print its reply.",
    )
    _common(publish)
    publish.add_argument("--url", default="http://127.0.0.1:8080", help="the node's base URL")
    publish.add_argument(
        "--channel", action="append", required=True, help="target channel (repeatable)"
    )
    publish.add_argument("--kind", required=True, help="event kind, e.g. work_order.urgent")
    publish.add_argument(
        "--priority", default="normal", choices=["critical", "high", "normal", "low"]
    )
    publish.add_argument("--data", default="{}", help="event data as a JSON object")
    publish.add_argument("--idempotency-key", help="makes retries safe")
    publish.add_argument(
        "--token",
        help="bearer token (default: env FIELDPUSH_TOKEN, else a dispatcher token "
        "minted with the configured secret)",
    )
    records = commands.add_parser(
        "records",
        help="load records into a running node",
        description="Records of delta sync (docs/sync.md).",
    )
    record_commands = records.add_subparsers(
        dest="records_command", required=True, metavar="ACTION"
    )
    load = record_commands.add_parser(
        "import",
        help="initial load from a JSON Lines file",
        description='Write every line {"type", "rid", "fields"} through a running node '
        "as the CRM (POST /v1/sync/push with a service token): mapped from the CRM's names, "
        "validated, and on the change feed like any CRM write. Running the same file again "
        "changes nothing (each line's mutation id is derived from its content).",
    )
    _common(load)
    load.add_argument("file", type=Path, help="JSON Lines file, one record per line")
    load.add_argument("--url", default="http://127.0.0.1:8080", help="the node's base URL")
    load.add_argument("--batch", type=int, default=500, help="records per request (default 500)")
    load.add_argument(
        "--token",
        help="bearer token of role service (default: env FIELDPUSH_TOKEN, else one minted "
        "with the configured secret)",
    )
    return parser


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


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(config_path=args.config, overrides=overrides)


def _serve(args: argparse.Namespace) -> int:
    from fieldpush.app import build_server, describe
    from fieldpush.node import make_backend
    from fieldpush.sync.engine import load_sync_config

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        node_id=args.node_id,
        dev=args.dev,
        log_level=args.log_level,
        **_tls_overrides(args),
    )
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))  # input cannot forge a log line
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    load_sync_config(settings)  # a broken schema or mapping stops here, with where and why
    backend = make_backend(settings)

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


def _token(args: argparse.Namespace) -> int:
    from fieldpush.identity.auth import mint_token

    settings = _settings(args, dev=True)  # minting does not listen: the dev secret may sign
    teams = [t.strip() for t in args.teams.split(",") if t.strip()]
    try:
        token = mint_token(settings, user=args.user, role=args.role, teams=teams, ttl_s=args.ttl)
    except ValueError as exc:
        print(f"fieldpush token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _publish(args: argparse.Namespace) -> int:
    import os

    import httpx

    from fieldpush.identity.auth import mint_token

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        print(f"fieldpush publish: --data is not JSON: {exc}", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("FIELDPUSH_TOKEN")
    if not token:
        token = mint_token(_settings(args, dev=True), user="cli", role="dispatcher", ttl_s=300)
    body: dict[str, Any] = {
        "channels": args.channel,
        "kind": args.kind,
        "priority": args.priority,
        "data": data,
    }
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    try:
        reply = httpx.post(
            args.url.rstrip("/") + "/v1/publish",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"fieldpush publish: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply.json(), indent=2))
    return 0 if reply.status_code == 201 else 1


def _import_lines(path: Path) -> Any:
    """``(line number, mutation or error message)`` for each non-blank line."""
    import hashlib

    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield number, f"not JSON: {exc}"
                continue
            if not (
                isinstance(record, dict)
                and isinstance(record.get("type"), str)
                and isinstance(record.get("rid"), str)
                and isinstance(record.get("fields"), dict)
            ):
                yield number, 'expected {"type": ..., "rid": ..., "fields": {...}}'
                continue
            mid = "import-" + hashlib.sha256(line.strip().encode()).hexdigest()[:40]
            yield (
                number,
                {
                    "mid": mid,
                    "type": record["type"],
                    "rid": record["rid"],
                    "fields": record["fields"],
                    "hlc": [0, 0],
                },
            )


def _import(args: argparse.Namespace) -> int:
    import os
    from collections import Counter

    import httpx

    from fieldpush.identity.auth import mint_token

    if args.batch < 1:
        print("fieldpush records import: --batch must be positive", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"fieldpush records import: no file {args.file}", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("FIELDPUSH_TOKEN")
    if not token:
        token = mint_token(_settings(args, dev=True), user="import", role="service", ttl_s=3600)
    counts: Counter[str] = Counter()
    url = args.url.rstrip("/") + "/v1/sync/push"
    headers = {"Authorization": f"Bearer {token}"}

    def report(number: int, problem: str) -> None:
        counts["refused"] += 1
        print(f"{args.file}:{number}: {problem}", file=sys.stderr)

    def send(http: httpx.Client, batch: list[tuple[int, dict[str, Any]]]) -> bool:
        body = {"device": "import", "mutations": [m for _, m in batch]}
        reply = http.post(url, json=body, headers=headers)
        if reply.status_code != 200:
            print(f"fieldpush records import: {reply.status_code} {reply.text}", file=sys.stderr)
            return False
        for (number, _), result in zip(batch, reply.json()["results"], strict=True):
            if result["status"] == "applied":
                counts["applied"] += 1
            else:
                report(
                    number, f"{result['status']}: {result.get('message') or result.get('reason')}"
                )
        return True

    batch: list[tuple[int, dict[str, Any]]] = []
    try:
        with httpx.Client(timeout=60) as http:
            for number, item in _import_lines(args.file):
                if isinstance(item, str):
                    report(number, item)
                    continue
                batch.append((number, item))
                if len(batch) >= args.batch:
                    if not send(http, batch):
                        return 1
                    batch = []
            if batch and not send(http, batch):
                return 1
    except httpx.HTTPError as exc:
        print(f"fieldpush records import: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(f"{counts['applied']} record(s) written, {counts['refused']} refused")
    return 0 if counts["refused"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "token": _token, "publish": _publish, "records": _import}
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"fieldpush {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
