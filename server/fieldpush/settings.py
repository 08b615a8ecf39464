"""One typed settings object, read only at the edge (the command line).

Sources, highest first: command-line flags, ``FIELDPUSH_*`` environment
variables, the TOML file (``--config``, else ``config/fieldpush.toml`` when
present), built-in defaults. Every setting is listed in
``docs/configuration.md``; its environment variable is ``FIELDPUSH_`` plus the
setting's name in upper case (``heartbeat_s`` -> ``FIELDPUSH_HEARTBEAT_S``).

Nothing here is read at import time: :func:`load_settings` does the reading.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import Any, Final, get_type_hints
from urllib.parse import urlsplit

from fieldpush.errors import ConfigError

__all__ = ["DEFAULT_CONFIG_PATH", "DEV_JWT_SECRET", "Secret", "Settings", "load_settings"]

DEFAULT_CONFIG_PATH: Final = Path("config/fieldpush.toml")
ENV_PREFIX: Final = "FIELDPUSH_"

#: The built-in development secret. The server refuses it unless it binds to
#: loopback only or runs with ``--dev``.
DEV_JWT_SECRET: Final = "fieldpush-development-secret-do-not-use-in-production"


class Secret:
    """A string that never prints: ``repr`` and ``str`` show ``'**********'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def default_config_file(name: str) -> str:
    """A config file's built-in default: ``config/<name>`` in the working directory
    when it exists (the repository's editable copy), else the copy shipped in the
    package (``fieldpush/defaults/``), so that ``fieldpush serve`` works anywhere."""
    local = Path("config") / name
    if local.is_file():
        return str(local)
    return str(files("fieldpush").joinpath("defaults", name))


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


#: Accepted ``log_level`` values (uvicorn's; ``trace`` is uvicorn's most verbose).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of a node. Units are in the names."""

    # Listening
    host: str = "127.0.0.1"
    port: int = 8080
    node_id: str = field(default_factory=_default_node_id)
    dev: bool = False
    log_level: str = "info"
    access_log: bool = False
    #: ``text`` (one escaped line per record) or ``json`` (one JSON object per
    #: line: ts, level, logger, msg and the record's fields; docs/operations.md, "Logs").
    log_format: str = "text"
    #: Publishes logged per second at INFO (one line each); above it, one line
    #: a second says how many were not logged. 0: no publish lines.
    log_publish_max_per_s: int = 50
    #: A listener that serves only ``GET /metrics`` (then the main port answers
    #: 404 for it), on ``metrics_host``; None: ``/metrics`` on the main port.
    #: 0: any free port (logged at start).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: Trust X-Forwarded-* headers from these proxies ("*" or a comma-separated
    #: list of addresses); None: ignore those headers.
    forwarded_allow_ips: str | None = None

    # Backend
    redis_url: str | None = None
    redis_prefix: str = "fp"
    redis_timeout_s: float = 2.0

    # TLS and browser origins (docs/security.md)
    #: PEM certificate chain (the server's certificate first) and its private
    #: key: with both, the port serves https:// and wss://. Neither: plain TCP.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: PEM CA certificate(s) that sign client certificates; only these are
    #: trusted for them. ``ssl_client_cert``: ``required`` refuses a TLS client
    #: without a valid certificate, ``optional`` checks one only when it is sent.
    ssl_ca_certs: str | None = None
    ssl_client_cert: str = "required"
    #: Origins (``scheme://host[:port]``) whose pages may open the WebSocket.
    #: An upgrade carrying another ``Origin`` gets HTTP 403; one without
    #: ``Origin`` (phones, servers, the SDK) is accepted. Empty: no browser page.
    allowed_origins: tuple[str, ...] = ()
    #: Origins whose pages may call the HTTP API (CORS: ``Access-Control-Allow-*``
    #: answers, preflights included). Empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()

    # Tokens (docs/protocol.md section 4)
    jwt_secret: Secret = field(default_factory=lambda: Secret(DEV_JWT_SECRET))
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_public_keys: Mapping[str, str] = field(default_factory=dict)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_ttl_s: int = 3600
    #: The bearer secret of SCIM provisioning (``/scim/v2/...``, docs/security.md),
    #: at least 32 bytes. None: SCIM is off (every SCIM path answers 404).
    scim_token: Secret | None = None

    # Revocation (docs/security.md, "Revocation")
    #: Each node re-reads the cluster's disabled users and revoked tokens this
    #: often (and after every reconnect to Redis), whatever pub/sub delivered:
    #: the longest a missed announcement can leave a revoked token working.
    access_reread_s: float = 10.0
    #: A token revoked by its ``jti`` is remembered this long; revoke tokens that
    #: live longer by user and issue time (``{user, issued_before}``).
    revoked_token_ttl_s: float = 30 * 86400

    # Sessions
    heartbeat_s: float = 25.0
    hello_timeout_s: float = 10.0
    #: A connection gets ``refresh_needed`` this long before its token's ``exp``
    #: (at most half the token's remaining lifetime at ``hello`` or ``refresh``).
    refresh_lead_s: float = 60.0
    #: A connection without a valid ``refresh`` by ``exp`` plus this is closed (4001).
    refresh_grace_s: float = 10.0
    #: On SIGTERM phones get ``goaway`` with this window and reconnect at a
    #: random point of it; those still connected at its end are closed (1012).
    goaway_min_ms: int = 500
    goaway_max_ms: int = 5000
    #: The node exits at the latest this long after SIGTERM.
    drain_deadline_s: float = 30.0
    max_frame_bytes: int = 65536
    max_outbox_bytes: int = 1_048_576
    #: Frames written to a phone while earlier ones were still unsent, at most.
    max_outbox_messages: int = 4096
    #: ``low`` events a connection holds back at most; more are written at once.
    max_held_events: int = 1000
    #: Channels one connection may be subscribed to (its own user channel included).
    max_subscriptions: int = 64
    #: Inbound messages per second per connection (token bucket) and the burst
    #: it allows; a message beyond gets ``error`` ``rate_limited``, and more
    #: than ``rate_limit_burst`` refusals in a row close with 4029.
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 40
    #: Connections this node accepts at once; beyond, the upgrade gets HTTP 503.
    #: 0: no limit.
    max_connections: int = 0
    #: Connections one user may hold at once, cluster-wide (0: no limit); beyond,
    #: ``connections_per_user_policy`` decides: ``oldest`` closes the oldest
    #: (4029), ``newest`` refuses the new one (4029).
    max_connections_per_user: int = 10
    #: Devices the registry keeps per user (``GET /v1/admin/users/{id}/devices``);
    #: a new one beyond evicts the ``active`` device seen least recently (0: no limit).
    max_devices_per_user: int = 50
    connections_per_user_policy: str = "oldest"
    #: ``normal`` events for one phone that arrive within this window share one
    #: frame (0: only those of the same event-loop iteration). Never delays
    #: ``critical`` or ``high``.
    coalesce_ms: float = 2.0

    # Dispatch: acks, receipts, escalation, presence
    #: Ack deadline of critical events per kind (seconds); ``ack_deadline_s`` on
    #: a publish overrides it. Kinds not listed use ``default_ack_deadline_s``
    #: (0: no deadline, never escalated).
    ack_deadlines_s: Mapping[str, float] = field(default_factory=dict)
    default_ack_deadline_s: float = 0.0
    #: How often each node looks for unacked events past their deadline, and how
    #: long a claim keeps other nodes off an event (a node that dies holding one
    #: delays that escalation by at most this).
    escalation_interval_s: float = 1.0
    escalation_lease_s: float = 10.0
    #: Escalations are also POSTed here (JSON), retried with backoff.
    escalation_webhook_url: str | None = None
    escalation_webhook_attempts: int = 8
    #: Receipts and pending state of critical events are kept this long.
    receipts_ttl_s: float = 7 * 86400
    #: A node's presence entries vanish this long after it stopped (died).
    presence_ttl_s: float = 15.0

    # History
    history_max_events: int = 2000
    history_max_age_s: float = 36 * 3600
    history_meta_ttl_s: float = 30 * 86400
    replay_page_events: int = 500

    # Publish and poll
    max_publish_bytes: int = 65536
    max_publish_channels: int = 100
    idempotency_ttl_s: float = 86400
    poll_max_wait_s: float = 30.0
    #: Advertised in ``welcome.poll``: how often to poll, per data class (seconds).
    poll_intervals_s: Mapping[str, float] = field(default_factory=lambda: {"low": 900.0})

    # Delta sync (docs/sync.md)
    #: The data dictionary and the field mappings; relative paths are taken
    #: from the working directory. No mappings file: names pass through. Default:
    #: ``config/schema.toml`` (``config/mappings.toml``) when present, else the
    #: copy shipped in the package.
    schema_path: str = field(default_factory=lambda: default_config_file("schema.toml"))
    mappings_path: str | None = field(default_factory=lambda: default_config_file("mappings.toml"))
    #: A device stamp further ahead of the server's clock than this counts in
    #: ``fieldpush_sync_clock_skewed_total`` (a wrong clock, not jitter). Every
    #: stamp ahead is clamped to the server's clock at receipt, whatever this says.
    sync_max_skew_s: float = 300.0
    #: A mutation's result is kept this long: a replay of its ``mid`` within it
    #: returns the first result.
    sync_results_ttl_s: float = 7 * 86400
    #: The change log keeps this many entries and this long; a pull cursor
    #: older than that answers ``resync``.
    sync_log_max_entries: int = 1_000_000
    sync_log_max_age_s: float = 30 * 86400
    #: Mutations in one ``mutate`` (or ``/v1/sync/push``) at most.
    sync_max_mutations: int = 500
    #: Largest body of ``/v1/sync/push``, ``/v1/sync/pull`` and ``PUT /v1/records``.
    sync_max_body_bytes: int = 1_048_576
    #: Changes in one ``pull`` page: when no ``limit`` is given, and at most.
    sync_page_default: int = 500
    sync_page_max: int = 5000

    # The change-feed webhook (docs/sync.md, "Webhook")
    #: The CRM's endpoint that gets the change feed POSTed (``http://`` or
    #: ``https://``). None: no webhook; the CRM reads ``GET /v1/changes``.
    webhook_url: str | None = None
    #: The HMAC-SHA256 key of ``Fieldpush-Signature``, shared with the CRM;
    #: required with ``webhook_url``, at least 32 bytes, never ``jwt_secret``.
    webhook_secret: Secret | None = None
    #: Feed entries in one POST at most, and how long a partial batch waits
    #: for more (also how often an idle deliverer looks at the log).
    webhook_batch_entries: int = 100
    webhook_linger_s: float = 0.5
    #: One POST, connect to last byte of the answer's head, at most this long.
    webhook_timeout_s: float = 10.0
    #: Failed POSTs are retried after a full-jitter delay growing from
    #: ``webhook_backoff_min_s`` (doubling) up to ``webhook_backoff_max_s``.
    webhook_backoff_min_s: float = 0.5
    webhook_backoff_max_s: float = 60.0
    #: The deliverer's lease (one node delivers): renewed every third of it;
    #: a node that dies holding it delays delivery by at most this.
    webhook_lease_s: float = 15.0

    # Uploads and files (docs/attachments.md).
    #: The directory of uploads and finished files; every node of a cluster
    #: must mount the same one. Created (mode 0700) at the first upload.
    files_dir: str = "files"
    #: ``Upload-Length`` at most, per file (``Tus-Max-Size``); more: 413.
    files_max_bytes: int = 100 * 1024 * 1024
    #: Bytes per user at most, unfinished and finished uploads together; more: 413.
    files_quota_bytes: int = 2 * 1024 * 1024 * 1024
    #: An unfinished upload expires this many seconds after its last chunk.
    files_upload_expiry_s: float = 86400.0
    #: How often each node removes expired unfinished uploads.
    files_sweep_s: float = 60.0

    # The audit trail (docs/compliance.md, "Audit trail").
    #: Memory backend only: the append-only JSONL file that keeps the trail
    #: across restarts (read and verified at start; a file that does not
    #: verify refuses the start). None: the trail lives in memory only.
    audit_file: str | None = None
    #: Entries waiting for the backend at most; beyond, audited actions are
    #: refused (503) until the backend takes them (never dropped).
    audit_max_pending: int = 100_000
    #: The Ed25519 private key (PEM file) that signs checkpoints; make one
    #: with ``fieldpush audit keygen``. None: no checkpoints (warned at start).
    audit_signing_key: str | None = None
    #: Where checkpoints go, one JSON file each: somewhere the trail's
    #: writers cannot rewrite (another disk, a WORM mount, a synced bucket).
    audit_checkpoint_dir: str = "audit-checkpoints"
    #: A checkpoint after this many entries stored by this node, and every
    #: ``audit_checkpoint_s`` seconds while the trail grows.
    audit_checkpoint_entries: int = 1000
    audit_checkpoint_s: float = 60.0
    #: Login refusals are one entry per (source address, reason) per this
    #: many seconds, with the count.
    audit_refusals_s: float = 60.0

    # Hostile input (docs/security.md): each HTTP request's head, upgrades
    # included, before any route sees it (transport/listener.py).
    #: Seconds from the connection, or a keep-alive request's first byte, to
    #: the end of its headers; slower: 408 and closed.
    header_timeout_s: float = 10.0
    #: Bytes of request line and headers at most; more: 431 and closed.
    max_header_bytes: int = 32768
    #: Header fields in one request at most; more: 431 and closed.
    max_header_count: int = 100

    @property
    def uses_dev_secret(self) -> bool:
        return "HS256" in self.jwt_algorithms and self.jwt_secret.reveal() == DEV_JWT_SECRET

    @property
    def binds_loopback_only(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> None:
        """Refuse settings that cannot work or are unsafe; say what to do."""
        if self.uses_dev_secret and not (self.dev or self.binds_loopback_only):
            raise ConfigError(
                f"refusing to listen on {self.host} with the built-in development JWT secret: "
                "set jwt_secret in the config file or FIELDPUSH_JWT_SECRET, "
                "or pass --dev to accept development tokens on purpose"
            )
        positive = (
            "heartbeat_s",
            "hello_timeout_s",
            "refresh_lead_s",
            "max_frame_bytes",
            "max_outbox_bytes",
            "max_outbox_messages",
            "max_held_events",
            "max_subscriptions",
            "rate_limit_per_s",
            "rate_limit_burst",
            "history_max_events",
            "history_max_age_s",
            "replay_page_events",
            "max_publish_bytes",
            "max_publish_channels",
            "idempotency_ttl_s",
            "escalation_interval_s",
            "escalation_lease_s",
            "escalation_webhook_attempts",
            "receipts_ttl_s",
            "presence_ttl_s",
            "sync_max_skew_s",
            "sync_results_ttl_s",
            "sync_log_max_entries",
            "sync_log_max_age_s",
            "sync_max_mutations",
            "sync_max_body_bytes",
            "sync_page_default",
            "sync_page_max",
            "audit_max_pending",
            "audit_checkpoint_entries",
            "audit_checkpoint_s",
            "audit_refusals_s",
            "access_reread_s",
            "revoked_token_ttl_s",
            "webhook_batch_entries",
            "webhook_linger_s",
            "webhook_timeout_s",
            "webhook_backoff_min_s",
            "webhook_backoff_max_s",
            "webhook_lease_s",
            "files_max_bytes",
            "files_quota_bytes",
            "files_upload_expiry_s",
            "files_sweep_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in (
            "max_connections",
            "max_connections_per_user",
            "max_devices_per_user",
            "coalesce_ms",
            "refresh_grace_s",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (off) or positive")
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.connections_per_user_policy not in ("oldest", "newest"):
            raise ConfigError("connections_per_user_policy must be 'oldest' or 'newest'")
        if self.sync_page_default > self.sync_page_max:
            raise ConfigError("sync_page_default must not exceed sync_page_max")
        if "low" not in self.poll_intervals_s:
            raise ConfigError(
                "poll_intervals_s needs a 'low' entry: how long a connection holds "
                "low-priority events at most"
            )
        deadlines = {"default_ack_deadline_s": self.default_ack_deadline_s}
        deadlines.update({f"ack_deadlines_s.{k}": v for k, v in self.ack_deadlines_s.items()})
        for name, value in deadlines.items():
            if value < 0:
                raise ConfigError(f"{name} must be 0 (none) or a positive number of seconds")
        if not 0 <= self.goaway_min_ms <= self.goaway_max_ms:
            raise ConfigError("need 0 <= goaway_min_ms <= goaway_max_ms")
        if self.drain_deadline_s * 1000 <= self.goaway_max_ms:
            raise ConfigError("drain_deadline_s must be longer than goaway_max_ms")
        if self.history_meta_ttl_s < self.history_max_age_s:
            raise ConfigError("history_meta_ttl_s must be at least history_max_age_s")
        if "HS256" in self.jwt_algorithms and len(self.jwt_secret.reveal().encode()) < 32:
            raise ConfigError(
                "jwt_secret must be at least 32 bytes for HS256 (RFC 7518 section 3.2)"
            )
        if self.scim_token is not None and len(self.scim_token.reveal().encode()) < 32:
            raise ConfigError("scim_token must be at least 32 bytes")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0 to 65535, not {self.port}")
        unknown = set(self.jwt_algorithms) - {"HS256", "RS256", "ES256"}
        if unknown:
            raise ConfigError(
                f"jwt_algorithms: unsupported {sorted(unknown)}; use HS256, RS256 or ES256"
            )
        if set(self.jwt_algorithms) - {"HS256"} and not self.jwt_public_keys:
            raise ConfigError("jwt_algorithms lists RS256/ES256 but jwt_public_keys is empty")
        self._check_tls_and_origins()
        self._check_hostile_input()
        self._check_webhook()

    def _check_tls_and_origins(self) -> None:
        """The TLS settings go together; every allowed origin is written the
        way browsers send it. (The files are read by
        :func:`fieldpush.transport.tls.server_context`.)"""
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError(
                "ssl_certfile and ssl_keyfile go together: give both, or neither for plain "
                "HTTP (a PEM file that holds the certificate and the key: give it for both)"
            )
        if self.ssl_ca_certs is not None and self.ssl_certfile is None:
            raise ConfigError(
                "ssl_ca_certs checks client certificates, which needs TLS: "
                "set ssl_certfile and ssl_keyfile too"
            )
        if self.ssl_client_cert not in ("required", "optional"):
            raise ConfigError(
                f"ssl_client_cert must be 'required' or 'optional', not {self.ssl_client_cert!r}"
            )
        for name in ("allowed_origins", "cors_origins"):
            for origin in getattr(self, name):
                if not _is_origin(origin):
                    raise ConfigError(
                        f"{name}: {origin!r} is not an origin; write it as browsers send "
                        "it, scheme://host[:port] in lower case without a path or a trailing "
                        "slash, e.g. https://console.example.com"
                    )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be 'text' or 'json', not {self.log_format!r}")
        if self.log_publish_max_per_s < 0:
            raise ConfigError("log_publish_max_per_s must be 0 (off) or positive")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be a port (0 to 65535), not {self.metrics_port}")

    def _check_hostile_input(self) -> None:
        """The settings of docs/security.md: positive head limits, and never
        the development secret behind a proxy (a loopback bind does not mean
        local clients then: the proxy forwards anyone)."""
        for name in ("header_timeout_s", "max_header_bytes", "max_header_count"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)!r}")
        if self.uses_dev_secret and self.forwarded_allow_ips is not None:
            raise ConfigError(
                "refusing the built-in development JWT secret while forwarded headers are "
                "trusted (forwarded_allow_ips is set: clients come through a proxy): "
                "set jwt_secret in the config file or FIELDPUSH_JWT_SECRET, "
                "or remove forwarded_allow_ips"
            )

    def _check_webhook(self) -> None:
        """A webhook URL needs its own signing secret: not the development
        secret outside ``dev`` (it would sign for anyone who read this
        source), never ``jwt_secret`` (the CRM would hold the key that mints
        tokens)."""
        if self.webhook_batch_entries > self.sync_page_max:
            raise ConfigError("webhook_batch_entries must not exceed sync_page_max")
        if self.webhook_backoff_min_s > self.webhook_backoff_max_s:
            raise ConfigError("webhook_backoff_min_s must not exceed webhook_backoff_max_s")
        if self.webhook_url is None:
            return
        scheme, _, rest = self.webhook_url.partition("://")
        if scheme not in ("http", "https") or not rest or not self.webhook_url.isprintable():
            raise ConfigError("webhook_url must be an http:// or https:// URL")
        if self.webhook_secret is None:
            raise ConfigError(
                "webhook_url is set but webhook_secret is not: set FIELDPUSH_WEBHOOK_SECRET "
                "(at least 32 bytes, shared with the receiver)"
            )
        secret = self.webhook_secret.reveal()
        if secret == DEV_JWT_SECRET:
            if not self.dev:
                raise ConfigError(
                    "refusing the built-in development secret as webhook_secret: "
                    "set a secret of your own, or pass --dev"
                )
        elif secret == self.jwt_secret.reveal():
            raise ConfigError("webhook_secret must differ from jwt_secret")
        if len(secret.encode()) < 32:
            raise ConfigError("webhook_secret must be at least 32 bytes")


def _is_origin(text: str) -> bool:
    """Whether ``text`` is a serialised HTTP(S) origin (RFC 6454 section 6.2)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and text == text.lower()
        and text == f"{parts.scheme}://{parts.netloc}"
        and "@" not in parts.netloc
    )


_TYPES: Final = get_type_hints(Settings)
_NAMES: Final = {f.name for f in fields(Settings)}


def _cast(name: str, value: Any, source: str) -> Any:
    """Cast a value from TOML or the environment to the setting's type."""
    hint = _TYPES[name]
    text = value if isinstance(value, str) else None
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in ("1", "true", "yes", "on"):
                return True
            if text is not None and text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if hint is Secret:
            return Secret(str(value))
        if hint == Secret | None:
            return None if value in ("", None) else Secret(str(value))
        if hint == tuple[str, ...]:
            items = value.split(",") if text is not None else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
        if hint == Mapping[str, str] or hint == Mapping[str, float]:
            if not isinstance(value, Mapping):
                raise ValueError("expected a table")
            cast = float if hint == Mapping[str, float] else str
            return {str(k): cast(v) for k, v in value.items()}
        if hint == str | None:
            return None if value in ("", None) else str(value)
        if hint == int | None:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return None if value in ("", None) else int(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid value for {name}: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    table = document.get("server", document)
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name not in _NAMES:
            raise ConfigError(f"{path}: unknown setting {name!r} (see docs/configuration.md)")
        values[name] = _cast(name, value, str(path))
    return values


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or value == "":
            continue  # an empty variable counts as unset
        name = key[len(ENV_PREFIX) :].lower()
        if name in _NAMES and _TYPES[name] not in (Mapping[str, str], Mapping[str, float]):
            values[name] = _cast(name, value, key)
    return values


def load_settings(
    *,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and
    ``overrides`` (command-line flags), in that order of increasing priority.

    ``config_path`` None means ``config/fieldpush.toml`` when it exists. A
    table ``[server]`` in the file holds the settings (or the top level does).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_path is None:
        env_path = environ.get(f"{ENV_PREFIX}CONFIG")
        config_path = Path(env_path) if env_path else None
    if config_path is not None:
        values.update(_read_toml(config_path))
    elif DEFAULT_CONFIG_PATH.is_file():
        values.update(_read_toml(DEFAULT_CONFIG_PATH))
    values.update(_read_env(environ))
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _cast(name, value, "command line") if name in _TYPES else value
    settings = Settings(**values)
    settings.check()
    return settings


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``changes`` (for tests and tools)."""
    return dataclasses.replace(settings, **changes)
