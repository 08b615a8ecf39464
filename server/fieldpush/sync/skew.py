"""Per-device clock skew made visible (docs/sync.md, "Clock guarantees").

Every phone stamp the committer judges by the rules (refused ones included;
not replays, nor mutations refused before they are stamped) has an *offset*:
its ``wall_ms`` as sent minus the server's wall clock when the batch arrived.
Positive: the device's clock runs ahead (by at least that much; an edit
cannot be made in the future). Negative: it runs behind, or the edit waited
offline. The offset changes nothing stored in records (stamps are clamped,
:mod:`fieldpush.sync.hlc`); it is only reported:

- every offset goes into the ``sync_clock_offset_seconds`` histogram, and one
  further ahead than ``skewed_ms`` (``sync_max_skew_s``) counts in
  ``sync_clock_skewed_total``: no per-device label;
- the device registry keeps the batch's newest offset (its largest: the
  latest edit) as the device's ``skew_ms`` (``GET
  /v1/admin/users/{id}/devices``), bounded to :data:`SKEW_BOUND_MS`. It is
  written only when it differs from the value this node last wrote for the
  device by more than :data:`SKEW_STEP_MS` (or this node wrote none): a phone
  with a steady clock costs one backend write per node, not one per mutation.
  So the registry is at most :data:`SKEW_STEP_MS` off what this node saw last,
  per registered device. (A write for a device not registered yet, such as
  one that pushed over HTTP before its first ``hello``, makes no entry and
  counts as written: that device's ``skew_ms`` appears once its offset next
  moves by more than the step, so an HTTP-only device costs no write per
  batch.) A write that fails (backend unavailable) is skipped and tried at
  the next batch; it never fails the mutation, which is committed by then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from fieldpush.errors import BackendUnavailable
from fieldpush.metrics import Metrics
from fieldpush.sync.rules import Actor

__all__ = ["SKEW_BOUND_MS", "SKEW_STEP_MS", "SkewReport", "SkewWriter"]

#: A registry write is due when the offset moved by more than this.
SKEW_STEP_MS: Final = 1000
#: Offsets kept in the registry are bounded to +- this (about 31 years).
SKEW_BOUND_MS: Final = 10**12
#: Devices whose last written offset this node remembers; beyond, the one
#: written longest ago is forgotten (its next batch writes again).
REMEMBERED_DEVICES: Final = 65_536

#: :meth:`fieldpush.backend.base.Devices.note_skew`.
SkewWriter = Callable[[str, str, int], Awaitable[None]]


class SkewReport:
    """See the module docstring. One per node."""

    def __init__(self, write: SkewWriter, metrics: Metrics, *, skewed_ms: int) -> None:
        self._write = write
        self._metrics = metrics
        self._skewed_ms = skewed_ms
        self._written: dict[tuple[str, str], int] = {}

    async def note(self, actor: Actor, offsets: Sequence[int]) -> None:
        """Report the ``offsets`` of one batch of ``actor``'s (see the module
        docstring); nothing for an empty batch. Never raises BackendUnavailable."""
        if not offsets:
            return
        metrics = self._metrics
        for offset in offsets:
            metrics.clock_offset.observe(offset / 1000)
            if offset > self._skewed_ms:
                metrics.clock_skewed += 1
        skew = max(-SKEW_BOUND_MS, min(SKEW_BOUND_MS, max(offsets)))
        key = (actor.user, actor.device)
        last = self._written.get(key)
        if last is not None and abs(skew - last) <= SKEW_STEP_MS:
            return
        try:
            await self._write(actor.user, actor.device, skew)
        except BackendUnavailable:
            return
        written = self._written
        written.pop(key, None)
        if len(written) >= REMEMBERED_DEVICES:
            del written[next(iter(written))]
        written[key] = skew
