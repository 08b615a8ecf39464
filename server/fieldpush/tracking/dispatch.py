"""Dispatch that cannot be missed: receipts, acks and escalation of critical events.

One :class:`Dispatch` per node. Critical events are *tracked* (the backend
stores, with the event, who must ack it and its deadline: see
:class:`~fieldpush.backend.base.Ledger`); this module feeds the ledger and acts
on it:

- **Acks** are recorded in batches, once per event-loop iteration: the acks
  that come back together cost one backend call per node, not one per phone.
  **Deliveries** of tracked events (to sockets or polls) wait up to
  ``DELIVERY_HOLD_S`` and go with the user's ack when it comes first, else in
  one batch: a phone that acks at once costs one step pair, and its ack does
  not queue behind the fan-out's deliveries. The ack round trip (event queued
  for the socket until the ack is recorded) is measured per node.
- **Receipts**: the same backend call publishes each recipient's first
  delivery and first ack to the ``dispatch`` channel as a ``receipt`` event
  (priority ``high``), atomically with recording it.
- **Escalation**: every node looks for due deadlines every
  ``escalation_interval_s`` and claims them for a lease (atomic in the
  backend). The ``escalation`` event is published with the idempotency key
  ``escalation:<event id>``, so a node that dies after publishing and before
  settling, and the node that reclaims the event after the lease, produce
  one event between them: exactly once across the cluster. The node whose
  publish created the event then POSTs it to the configured webhook,
  retrying with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import urllib.error
import urllib.request
from typing import Any

from fieldpush.backend.base import (
    Due,
    Idempotency,
    Ledger,
    Publisher,
    PublishRequest,
    ReceiptStep,
    ReceiptStepKind,
)
from fieldpush.errors import BackendUnavailable
from fieldpush.events.ids import Ids
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush_client.protocol import encode_body

__all__ = ["Dispatch"]

log = logging.getLogger("fieldpush.dispatch")

#: The idempotency "publisher" of events the server publishes itself.
SERVER_PUBLISHER = "fieldpush"
#: Events claimed per escalation round.
CLAIM_BATCH = 100
#: How long one webhook call may take.
WEBHOOK_TIMEOUT_S = 5.0
#: How long a delivery waits to be recorded together with its ack; also how
#: late a "delivered" receipt may appear.
DELIVERY_HOLD_S = 0.05
#: Name of the tasks that record receipt steps (awaited at close; webhooks are not).
_RECORDING = "fieldpush-dispatch-record"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Dispatch:
    """Receipts, acks and escalation on one node; see the module docstring."""

    def __init__(
        self, ledger: Ledger, publisher: Publisher, ids: Ids, settings: Settings, metrics: Metrics
    ) -> None:
        self._ledger = ledger
        self._publisher = publisher
        self._settings = settings
        self._metrics = metrics
        self._new_id = ids.new_event_id
        self._steps: list[ReceiptStep] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._escalator: asyncio.Task[None] | None = None
        #: (user, event id) -> monotonic time it was written, for the ack round trip.
        self._written: dict[tuple[str, str], float] = {}
        #: (user, event id) -> its first delivery, not recorded yet.
        self._deliveries: dict[tuple[str, str], ReceiptStep] = {}
        self._deliveries_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._escalator = asyncio.get_running_loop().create_task(self._escalate_forever())

    async def close(self) -> None:
        """Record what is pending (for at most a few seconds), then stop."""
        self._flush_deliveries()
        self._flush()
        recording = [task for task in self._tasks if task.get_name() == _RECORDING]
        if recording:
            await asyncio.wait(recording, timeout=2 * self._settings.redis_timeout_s)
        tasks = [*self._tasks, *([self._escalator] if self._escalator else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def unacked(self) -> int:
        """Critical events written by this node to a user who has not acked them yet."""
        return len(self._written)

    def _spawn(self, work: Any, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------- deliveries and acks

    def delivered(self, event_id: str, user: str, device: str) -> None:
        """A tracked event was written to a device of ``user`` (or returned by a poll)."""
        key = (user, event_id)
        self._written.setdefault(key, time.monotonic())
        if key not in self._deliveries:  # the backend keeps the first one anyway
            step = ReceiptStep(
                ReceiptStepKind.DELIVERED, event_id, user, device, _now_ms(), self._new_id()
            )
            self._deliveries[key] = step
        if self._deliveries_timer is None:
            self._deliveries_timer = asyncio.get_running_loop().call_later(
                DELIVERY_HOLD_S, self._flush_deliveries
            )

    def _flush_deliveries(self) -> None:
        if self._deliveries_timer is not None:
            self._deliveries_timer.cancel()
            self._deliveries_timer = None
        for step in self._deliveries.values():
            self._add(step)
        self._deliveries.clear()

    def acked(self, user: str, device: str, ids: list[str]) -> asyncio.Future[None]:
        """Record an ack of ``ids`` by ``user``'s ``device`` (with their held
        deliveries). The future is done once it is recorded, or fails with
        ``BackendUnavailable``."""
        now = _now_ms()
        for event_id in ids:
            delivery = self._deliveries.pop((user, event_id), None)
            if delivery is not None:
                self._add(delivery)
            self._add(
                ReceiptStep(ReceiptStepKind.ACKED, event_id, user, device, now, self._new_id())
            )
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def forget(self, user: str, event_ids: list[str]) -> None:
        """Stop timing the ack of events written to a session that closed unacked."""
        for event_id in event_ids:
            self._written.pop((user, event_id), None)

    def _add(self, step: ReceiptStep) -> None:
        self._steps.append(step)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Record the steps of this event-loop iteration in one backend call."""
        self._flush_scheduled = False
        if not self._steps and not self._waiting:
            return
        steps, self._steps = self._steps, []
        waiting, self._waiting = self._waiting, []
        self._spawn(self._record(steps, waiting), _RECORDING)

    async def _record(self, steps: list[ReceiptStep], waiting: list[asyncio.Future[None]]) -> None:
        try:
            await self._ledger.record(steps)
        except BackendUnavailable as exc:
            log.warning("%d receipt step(s) not recorded: %s", len(steps), exc)
            for future in waiting:
                if not future.done():
                    future.set_exception(BackendUnavailable(str(exc)))
            return
        now = time.monotonic()
        histogram = self._metrics.ack_roundtrip["critical"]  # only critical events are tracked
        for step in steps:
            if step.step is ReceiptStepKind.ACKED:
                written = self._written.pop((step.user, step.event), None)
                if written is not None:
                    histogram.observe(now - written)
        for future in waiting:
            if not future.done():
                future.set_result(None)

    async def _publish(
        self, kind: str, data: dict[str, Any], idempotency: Idempotency | None = None
    ) -> bool:
        """Publish a server event to ``dispatch``; whether it is a new one."""
        event_id = self._new_id()
        result = await self._publisher.publish(
            PublishRequest(
                channels=("dispatch",),
                event_id=event_id,
                priority="high",
                body=encode_body(event_id, kind, "high", data),
                idempotency=idempotency,
            )
        )
        return not result.duplicate

    # ------------------------------------------------------------- escalation

    async def _escalate_forever(self) -> None:
        settings = self._settings
        lease_ms = int(settings.escalation_lease_s * 1000)
        while True:
            # Jittered, so that the nodes of a cluster do not all ask at once.
            await asyncio.sleep(settings.escalation_interval_s * random.uniform(0.5, 1.0))
            try:
                due = await self._ledger.claim_due(lease_ms, CLAIM_BATCH)
                for item in due:
                    await self._escalate(item)
            except BackendUnavailable as exc:
                log.warning("escalation check failed, will retry: %s", exc)

    async def _escalate(self, due: Due) -> None:
        data = {"event": due.id, "kind": due.kind, "users": due.unacked}
        key = f"escalation:{due.id}"
        new = await self._publish(
            "escalation", data, Idempotency(SERVER_PUBLISHER, key, fingerprint=key)
        )
        await self._ledger.settle(due.id)
        if new:
            self._metrics.escalations += 1
            log.warning(
                "escalated %s (%s): not acked by %s",
                due.id,
                due.kind,
                ", ".join(due.unacked) or "anyone",
            )
            if self._settings.escalation_webhook_url:
                self._spawn(self._call_webhook(data))

    async def _call_webhook(self, data: dict[str, Any]) -> None:
        """POST the escalation to the webhook; retry with full-jitter backoff."""
        settings = self._settings
        url = settings.escalation_webhook_url
        assert url is not None
        body = json.dumps({"type": "escalation", **data}).encode()
        for attempt in range(1, settings.escalation_webhook_attempts + 1):
            try:
                status = await asyncio.to_thread(_post, url, body, WEBHOOK_TIMEOUT_S)
            except OSError as exc:
                status, detail = 0, str(exc)
            else:
                detail = f"HTTP {status}"
            if 200 <= status < 300:
                return
            delay = random.uniform(0, min(30.0, 0.5 * 2**attempt))
            log.warning(
                "escalation webhook attempt %d failed (%s); retrying in %.1f s",
                attempt,
                detail,
                delay,
            )
            await asyncio.sleep(delay)
        log.error("escalation of %s not delivered to the webhook: gave up", data["event"])


def _post(url: str, body: bytes, timeout_s: float) -> int:
    """One blocking JSON POST (run in a thread); the HTTP status."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
