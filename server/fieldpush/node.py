"""The node: wires the long-lived parts of one fieldpush process together.

It builds each part with the narrow collaborators it needs (a ledger, a
publisher, settings, metrics, the id source, the registry, the flusher), so
no part knows the node, and it owns their start and shutdown order. It is
created by the app's lifespan and closed by it: close the connections still
open, stop the heartbeat, receipts and presence, close the hub, close the
backend. The HTTP routes (above it) read its public attributes.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from fieldpush import __version__
from fieldpush.audit.checkpoint import load_private_key
from fieldpush.backend.base import Backend
from fieldpush.delivery.access import AccessControl
from fieldpush.delivery.flusher import Flusher
from fieldpush.delivery.hub import Hub
from fieldpush.delivery.registry import Registry
from fieldpush.delivery.session import Session, SessionServices
from fieldpush.errors import ConfigError
from fieldpush.events.ids import Ids
from fieldpush.files.expiry import ExpirySweeper
from fieldpush.files.store import DirectoryStore
from fieldpush.files.uploads import Uploads
from fieldpush.identity.access import AccessList
from fieldpush.identity.auth import TokenVerifier
from fieldpush.logs import PublishLog
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.engine import SyncEngine, load_sync_config
from fieldpush.sync.webhook import WebhookDeliverer
from fieldpush.tracking.dispatch import Dispatch
from fieldpush.tracking.presence import PresenceTracker
from fieldpush.trail.checkpoints import Checkpointer
from fieldpush.trail.recorder import AuditRecorder
from fieldpush.trail.refusals import LoginRefusals
from fieldpush.transport.gateway import Connection, Gateway
from fieldpush.transport.heartbeat import Heartbeat
from fieldpush_client.protocol import CloseCode

__all__ = ["Node", "checkpointer", "make_backend"]

log = logging.getLogger("fieldpush.node")


def make_backend(settings: Settings) -> Backend:
    """The configured backend: Redis when ``redis_url`` is set, else memory."""
    sync: dict[str, Any] = {
        "sync_results_ttl_s": settings.sync_results_ttl_s,
        "sync_log_max_entries": settings.sync_log_max_entries,
        "sync_log_max_age_s": settings.sync_log_max_age_s,
    }
    if settings.redis_url:
        from fieldpush.backend.redis.backend import RedisBackend

        return RedisBackend(
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            timeout_s=settings.redis_timeout_s,
            history_max_events=settings.history_max_events,
            history_max_age_s=settings.history_max_age_s,
            history_meta_ttl_s=settings.history_meta_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            receipts_ttl_s=settings.receipts_ttl_s,
            **sync,
        )
    from fieldpush.backend.memory.backend import MemoryBackend

    return MemoryBackend(
        audit_file=settings.audit_file,
        history_max_events=settings.history_max_events,
        history_max_age_s=settings.history_max_age_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        receipts_ttl_s=settings.receipts_ttl_s,
        **sync,
    )


def checkpointer(settings: Settings, backend: Backend) -> Checkpointer | None:
    """The checkpoint writer, when a signing key is configured (read now:
    an unreadable key refuses the start)."""
    if not settings.audit_signing_key:
        return None
    path = Path(settings.audit_signing_key)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"audit_signing_key: cannot read {path}: {exc.strerror}") from None
    return Checkpointer(
        backend.audit,
        load_private_key(pem, f"audit_signing_key {path}"),
        settings.audit_checkpoint_dir,
        node=settings.node_id,
        every_entries=settings.audit_checkpoint_entries,
        every_s=settings.audit_checkpoint_s,
    )


class Node:
    """One fieldpush process. See the module docstring."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.ids = Ids()
        access = AccessList()
        self.verifier = TokenVerifier(settings, access)
        self.hub = Hub(backend, page_events=settings.replay_page_events)
        self.registry: Registry[Connection] = Registry()
        registry = self.registry
        #: The audit trail's recorder (docs/compliance.md, "Audit trail").
        self.audit = AuditRecorder(backend.audit, max_pending=settings.audit_max_pending)
        #: Refused tokens, aggregated per source and reason (``note(source, reason)``).
        self.login_refusals = LoginRefusals(self.audit, interval_s=settings.audit_refusals_s)
        #: Signed checkpoints of the trail (None without ``audit_signing_key``).
        self.checkpoints = checkpointer(settings, backend)
        if self.checkpoints is not None:
            self.audit.on_stored.append(self.checkpoints.stored)
        #: Disable, enable and revoke, cluster-wide (the admin API and SCIM call it).
        self.accounts = AccessControl(
            backend.accounts,
            access,
            registry,
            reread_s=settings.access_reread_s,
            revoked_ttl_s=settings.revoked_token_ttl_s,
            audit=self.audit,
        )
        self.metrics = Metrics(
            version=__version__,
            gauges={
                "sessions": ("Sessions past hello.", lambda: registry.session_count),
                "channels": (
                    "Channels with a live feed on this node.",
                    lambda: self.hub.channel_count,
                ),
                "critical_pending": (
                    "Critical events this node wrote to a user who has not acked them yet.",
                    lambda: self.dispatch.unacked,
                ),
                "backend_up": (
                    "1 when the backend answers (as far as this node knows), else 0.",
                    lambda: int(backend.health.up),
                ),
                "webhook_delivering": (
                    "1 while this node holds the change-feed webhook's lease.",
                    lambda: int(self.webhook is not None and self.webhook.delivering),
                ),
                "devices_drifting": (
                    "Devices whose last drift check on this node found a difference.",
                    lambda: self.sync.drift.drifting,
                ),
                "webhook_lag_seconds": (
                    "Age of the oldest change-feed entry the webhook has not delivered yet "
                    "(0 when none or no webhook).",
                    lambda: self.webhook.lag_s if self.webhook is not None else 0.0,
                ),
                "audit_checkpoint_age_seconds": (
                    "Seconds since the audit trail's head last had a signed checkpoint "
                    "(0 without audit_signing_key).",
                    lambda: self.checkpoints.age_s if self.checkpoints is not None else 0.0,
                ),
            },
            counters={
                "backend_errors_total": (
                    "Backend operations failed as unavailable.",
                    lambda: backend.health.errors,
                ),
                "backend_reconnects_total": (
                    "Backend links re-established after a loss.",
                    lambda: backend.health.reconnects,
                ),
                "backend_catchups_total": (
                    "Channel catch-ups from history after a live-feed gap.",
                    lambda: self.hub.catchups,
                ),
                "audit_appends_total": (
                    "Audit entries stored by this node.",
                    lambda: self.audit.stored,
                ),
            },
            connections=self._connections,
        )
        #: The sampled INFO line per accepted publish (``log_publish_max_per_s``).
        self.publish_log = PublishLog(settings.log_publish_max_per_s)
        self.flusher = Flusher(self.metrics, settings.coalesce_ms / 1000)
        self.dispatch = Dispatch(backend.ledger, backend, self.ids, settings, self.metrics)
        self.presence = PresenceTracker(backend.presence, backend.ledger, registry, settings)
        #: tus uploads and the content-addressed files (docs/attachments.md).
        files_dir = Path(settings.files_dir)
        self.files = DirectoryStore(files_dir)
        self.uploads = Uploads(
            files_dir,
            self.files,
            self.metrics,
            max_bytes=settings.files_max_bytes,
            quota_bytes=settings.files_quota_bytes,
            expiry_s=settings.files_upload_expiry_s,
        )
        self.sync = SyncEngine(
            *load_sync_config(settings),
            records=backend.records,
            publisher=backend,
            acked=self.dispatch.acked,
            new_event_id=self.ids.new_event_id,
            note_skew=backend.devices.note_skew,
            note_drift=backend.devices.note_drift,
            settings=settings,
            metrics=self.metrics,
            audit=self.audit,
            uploads=self.uploads,
        )
        #: The change-feed webhook (None without ``webhook_url``).
        self.webhook = (
            WebhookDeliverer(self.sync.feed, backend.webhook, settings, self.metrics)
            if settings.webhook_url
            else None
        )
        self.files_sweeper = ExpirySweeper(self.uploads, settings.files_sweep_s)
        #: ``welcome.poll``: the schema's poll intervals, then the settings' (which win).
        #: ``batch``: the schema's batch interval, when it has batch data.
        batch = self.sync.schema.batch_interval()
        self.poll_intervals = {
            **self.sync.schema.poll_intervals(),
            **({"batch": batch} if batch is not None else {}),
            **settings.poll_intervals_s,
        }
        self.heartbeat = Heartbeat(registry, settings.heartbeat_s)
        services = SessionServices(
            settings=settings,
            ids=self.ids,
            verifier=self.verifier,
            access=self.accounts,
            hub=self.hub,
            history=backend,
            opener=backend,
            devices=backend.devices,
            audit=self.audit,
            login_refusals=self.login_refusals,
            presence=self.presence,
            dispatch=self.dispatch,
            sync=self.sync,
            registry=registry,
            flusher=self.flusher,
            metrics=self.metrics,
            poll_intervals=self.poll_intervals,
        )
        #: What the gateway's connections share (the app state's ``"gateway"``).
        self.gateway = Gateway(
            settings,
            self.metrics,
            self.verifier,
            registry,
            functools.partial(Session, services),
            self.login_refusals,
        )

    def _connections(self) -> dict[tuple[str, str], int]:
        """Open connections by (transport, role): sockets (``none`` before
        hello) and the polls waiting now."""
        counts = Counter(
            ("websocket", session.identity.role if session.identity else "none")
            for session in self.registry.sessions()
        )
        counts["websocket", "none"] += self.registry.connection_count - self.registry.session_count
        for role, polls in self.metrics.polling.items():
            counts["longpoll", role] += polls
        return dict(counts)

    def new_event_id(self) -> str:
        """A unique event id (for the parts above the node: HTTP, sync)."""
        return self.ids.new_event_id()

    async def start(self) -> None:
        """Start the parts, lowest first: the backend (with the hub as its event
        sink), the audit recorder, access control (its first read of the access
        state), the hub, receipts, presence, the heartbeat, the upload sweeper, the webhook."""
        await self.backend.start(self.hub)
        self.audit.start()
        self.login_refusals.start()
        if self.checkpoints is not None:
            self.checkpoints.start()
        else:
            log.warning(
                "audit_signing_key is not set: the audit trail is chained but no signed "
                "checkpoints are written (docs/compliance.md, Audit trail)"
            )
        await self.accounts.start()
        self.hub.start()
        self.dispatch.start()
        self.presence.start()
        self.heartbeat.start()
        self.files_sweeper.start()
        if self.webhook is not None:
            self.webhook.start()
        log.info(
            "node %s started on the %s backend; schema %s, mappings %s",
            self.settings.node_id,
            self.backend.name,
            self.settings.schema_path,
            self.settings.mappings_path or "none",
        )

    async def close(self) -> None:
        """Stop in the reverse order, after closing the connections still open
        after the drain deadline (1012)."""
        for conn in self.registry.connections():
            conn.close(CloseCode.SERVICE_RESTART, "node stopped")
        if self.webhook is not None:
            await self.webhook.close()
        await self.files_sweeper.close()
        await self.heartbeat.close()
        await self.dispatch.close()
        await self.presence.close()
        await self.accounts.close()
        await self.hub.close()
        await self.login_refusals.close()
        await self.audit.close()
        self.publish_log.close()
        if self.checkpoints is not None:
            await self.checkpoints.close()
        await self.backend.close()
        log.info("node %s stopped", self.settings.node_id)
