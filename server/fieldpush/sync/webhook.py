"""The change-feed webhook: the CRM is told instead of polling (docs/sync.md, "Webhook").

:class:`WebhookDeliverer` reads the feed exactly as ``GET /v1/changes``
answers it (:meth:`fieldpush.sync.crm.CrmSide.feed`) and POSTs it to
``webhook_url`` in batches of up to ``webhook_batch_entries`` entries (a
partial batch waits ``webhook_linger_s`` for more), each body
``{"id", "changes", "cursor", "gap"}`` where ``id`` = ``cursor`` = the cursor
of the batch's last entry, signed with ``Fieldpush-Signature``
(:func:`fieldpush_client.webhook.sign`, a fresh timestamp per attempt).

Guarantees:

- **Feed order.** Batch n+1 is read only after batch n was answered 2xx; the
  entries inside a batch are in feed order.
- **At least once.** The delivered cursor is stored (``WebhookState.advance``)
  only after a 2xx. A retry is the same body (the same ``id``); a node that
  dies between the 2xx and the store, or a lease that moved meanwhile, makes
  the next deliverer send those entries again, perhaps batched differently:
  the receiver de-duplicates by each entry's ``cursor``.
- **Retried until a 2xx.** Any other answer (a 3xx included: redirects are
  never followed), a timeout (``webhook_timeout_s`` for the whole attempt),
  a refused connection or an answer that is not HTTP is retried with
  full-jitter exponential backoff between ``webhook_backoff_min_s`` and
  ``webhook_backoff_max_s``, forever, with the same body. At most
  :data:`MAX_RESPONSE_BYTES` of an answer are read, and none of it is logged.
- **One deliverer.** Only the holder of the backend's lease delivers; it
  renews it every third of ``webhook_lease_s`` and stops as soon as a renewal
  or a cursor write (fenced by the lease's token) fails.
- **Gaps are said.** A stored cursor older than the retained log (``resync``)
  is logged as an error, counted (``fieldpush_webhook_gaps_total``) and
  delivery goes on from the oldest retained entry with ``"gap": true`` in
  that next body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from fieldpush.backend.base import WebhookState
from fieldpush.errors import BackendUnavailable
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.sync.errors import SyncError
from fieldpush.tasks import stop
from fieldpush_client.backoff import backoff_delays
from fieldpush_client.protocol import ErrorCode
from fieldpush_client.webhook import SIGNATURE_HEADER, sign

__all__ = ["MAX_RESPONSE_BYTES", "FeedReader", "WebhookDeliverer", "encode_batch"]

log = logging.getLogger("fieldpush.webhook")

#: Bytes of an answer read at most; the rest is dropped with the connection.
MAX_RESPONSE_BYTES = 65536

#: ``CrmSide.feed``: ``(cursor, limit) -> {changes, cursor, more}``.
FeedReader = Callable[[str | None, int | None], Awaitable[dict[str, Any]]]


class _LeaseLost(Exception):
    """The cursor write was fenced off: another node delivers now."""


def encode_batch(changes: list[dict[str, Any]], gap: bool) -> bytes:
    """The body of one POST: feed entries (non-empty, in order, each with its
    cursor) under the batch's id, the cursor of the last entry."""
    last = changes[-1]["cursor"]
    body = {"id": last, "changes": changes, "cursor": last, "gap": gap}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _reason(status: int) -> str | None:
    """None for success (2xx), else the failure's metric label."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return "redirect"
    if 400 <= status < 500:
        return "status_4xx"
    return "status_5xx" if 500 <= status < 600 else "status_other"


class WebhookDeliverer:
    """See the module docstring."""

    def __init__(
        self,
        feed: FeedReader,
        state: WebhookState,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        if settings.webhook_url is None or settings.webhook_secret is None:
            raise ValueError("the webhook needs webhook_url and webhook_secret")
        self._feed = feed
        self._state = state
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret
        self._settings = settings
        self._metrics = metrics
        #: Unique per process: a restarted node with the same node_id is a new holder.
        self._holder = f"{settings.node_id}:{secrets.token_hex(4)}"
        self._lease_ms = max(1, int(settings.webhook_lease_s * 1000))
        parts = urlsplit(self._url)
        #: For logs: never the path or query (they may carry a token).
        self._where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._token: int | None = None
        self._oldest_ms: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def delivering(self) -> bool:
        """Whether this node holds the lease now."""
        return self._token is not None

    @property
    def lag_s(self) -> float:
        """Age of the oldest entry read but not yet delivered (0: caught up)."""
        if self._oldest_ms is None:
            return 0.0
        return max(0.0, time.time() - self._oldest_ms / 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook")

    async def close(self) -> None:
        """Stop delivering and give the lease up: another node takes it at its next
        try (every third of ``webhook_lease_s``) instead of after its expiry."""
        await stop(self._task)
        self._task = None

    # ------------------------------------------------------------------ lease

    async def _run(self) -> None:
        renew_s = self._settings.webhook_lease_s / 3
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=self._settings.webhook_timeout_s,
            limits=httpx.Limits(max_connections=1),
            headers={"User-Agent": "fieldpush-webhook"},
        ) as client:
            while True:
                try:
                    token = await self._state.hold(self._holder, self._lease_ms)
                except BackendUnavailable as exc:
                    log.warning("webhook: cannot reach the backend for the lease: %s", exc)
                    token = None
                except Exception:  # a bug or a broken script: keep trying, never die silently
                    log.exception("webhook: taking the lease failed; trying again")
                    token = None
                if token is None:
                    await asyncio.sleep(renew_s)
                    continue
                log.info(
                    "webhook: node %s delivers the change feed to %s (lease %d)",
                    self._settings.node_id,
                    self._where,
                    token,
                )
                self._token = token
                try:
                    failed = await self._while_held(client, token, renew_s)
                finally:
                    self._token = None
                    self._oldest_ms = None
                    await self._release(token)
                if failed:
                    await asyncio.sleep(renew_s)

    async def _while_held(self, client: httpx.AsyncClient, token: int, renew_s: float) -> bool:
        """Deliver while the lease is renewed; return when it is lost (False)
        or delivery failed unexpectedly (True, logged)."""
        task = asyncio.create_task(self._deliver(client, token), name="webhook-deliver")
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=renew_s)
                if done:
                    try:
                        task.result()
                    except _LeaseLost:
                        log.warning("webhook: lease %d was taken over; stopped delivering", token)
                    except Exception:
                        log.exception("webhook: delivery failed; starting it again")
                        return True
                    return False
                try:
                    renewed = await self._state.hold(self._holder, self._lease_ms)
                except BackendUnavailable as exc:
                    log.warning("webhook: cannot renew the lease: %s", exc)
                    continue  # the cursor write is fenced: at worst a batch is sent twice
                if renewed != token:
                    log.warning("webhook: lease %d expired; stopped delivering", token)
                    return False
        finally:
            await stop(task)

    async def _release(self, token: int) -> None:
        try:
            await self._state.release(self._holder, token)
        except BackendUnavailable as exc:
            log.warning("webhook: could not release the lease (it expires): %s", exc)

    # --------------------------------------------------------------- delivery

    async def _read(self, cursor: str | None, gap: bool) -> tuple[dict[str, Any], str | None, bool]:
        """The next page after ``cursor``, the cursor it was read after (None
        after a gap: the oldest retained) and whether there is a gap before it."""
        size = self._settings.webhook_batch_entries
        while True:
            try:
                return await self._feed(cursor, size), cursor, gap
            except SyncError as exc:
                if exc.code not in (ErrorCode.RESYNC, ErrorCode.BAD_REQUEST):
                    raise
                self._metrics.webhook_gaps += 1
                log.error(
                    "webhook: the delivered cursor is %s; entries were lost to the CRM, "
                    "delivering from the oldest retained entry with gap: true",
                    "older than the retained change log"
                    if exc.code == ErrorCode.RESYNC
                    else "not from this change log",
                )
                cursor, gap = None, True
            except BackendUnavailable as exc:
                log.warning("webhook: cannot read the change log: %s", exc)
                await asyncio.sleep(self._settings.webhook_linger_s)

    async def _deliver(self, client: httpx.AsyncClient, token: int) -> None:
        linger = self._settings.webhook_linger_s
        size = self._settings.webhook_batch_entries
        cursor = await self._state.cursor()
        gap = False
        lingered = False
        while True:
            page, cursor, gap = await self._read(cursor, gap)
            changes: list[dict[str, Any]] = page["changes"]
            self._oldest_ms = changes[0]["ts"] if changes else None
            if not changes or (len(changes) < size and not lingered):
                lingered = bool(changes)
                await asyncio.sleep(linger)
                continue
            lingered = False
            await self._post_until_delivered(client, encode_batch(changes, gap), len(changes))
            if not await self._advance(token, page["cursor"]):
                raise _LeaseLost
            self._metrics.webhook_batches += 1
            self._metrics.webhook_entries += len(changes)
            cursor, gap = page["cursor"], False

    async def _advance(self, token: int, cursor: str) -> bool:
        while True:
            try:
                return await self._state.advance(self._holder, token, cursor)
            except BackendUnavailable as exc:
                log.warning("webhook: cannot store the delivered cursor: %s", exc)
                await asyncio.sleep(self._settings.webhook_linger_s)

    async def _post_until_delivered(
        self, client: httpx.AsyncClient, body: bytes, entries: int
    ) -> None:
        settings = self._settings
        delays = backoff_delays(
            base_s=settings.webhook_backoff_min_s, cap_s=settings.webhook_backoff_max_s
        )
        attempt = 0
        while True:
            attempt += 1
            reason, detail = await self._post(client, body)
            if reason is None:
                if attempt > 1:
                    log.info("webhook: delivered after %d attempts", attempt)
                return
            self._metrics.webhook_failures[reason] += 1
            delay = max(settings.webhook_backoff_min_s, next(delays))
            log.warning(
                "webhook: POST of %d entries to %s failed (%s); attempt %d, retrying in %.2f s",
                entries,
                self._where,
                detail,
                attempt,
                delay,
            )
            await asyncio.sleep(delay)

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> tuple[str | None, str]:
        """One attempt: ``(None, ...)`` on a 2xx, else ``(reason, detail for the log)``."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret.reveal(), int(time.time())),
        }
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_s):
                async with client.stream("POST", self._url, content=body, headers=headers) as reply:
                    read = 0
                    async for chunk in reply.aiter_raw():
                        read += len(chunk)
                        if read > MAX_RESPONSE_BYTES:
                            break
                    status = reply.status_code
        except (TimeoutError, httpx.TimeoutException):
            return "timeout", f"no answer within {self._settings.webhook_timeout_s} s"
        except httpx.ConnectError:
            return "connect", "cannot connect"
        except (httpx.RemoteProtocolError, httpx.DecodingError):
            return "protocol", "the answer is not HTTP"
        except (httpx.HTTPError, OSError) as exc:
            return "network", type(exc).__name__
        reason = _reason(status)
        return reason, f"HTTP {status}"
