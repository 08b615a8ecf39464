"""The backend interface and the data it exchanges with the rest of the server.

Delivery guarantees, which every implementation must keep and the contract
suite checks:

- **Durable before acknowledged.** :meth:`Backend.publish` returns only after the
  event is in every target channel's history. When it cannot store the event it
  raises :class:`~server.errors.BackendUnavailable`; it never returns an offset
  for an event that is not stored.
- **Atomic per publish.** All channels of one publish get the event, or none do;
  a retry with the same idempotency key returns the first result.
- **Ordered history.** Offsets of a channel are strictly increasing; ``seq``
  counts events without holes within an epoch.
- **Live feed is at most once, in order.** After :meth:`Backend.subscribe`
  returns, events published to that channel are passed to
  :meth:`EventSink.on_event`, in order per channel. A live feed may lose
  events (Redis pub/sub is lossy); when it may have, the backend calls
  :meth:`EventSink.on_reconnected` and the sink catches up from history, which
  is the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from server.events import Event
from server.offsets import Offset

__all__ = ["Backend", "EventSink", "History", "Idempotency", "PublishRequest", "PublishResult"]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Makes a publish safe to retry: ``(publisher, key)`` identifies it for the
    configured time; ``fingerprint`` identifies the request body."""

    publisher: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class PublishRequest:
    channels: tuple[str, ...]
    event_id: str
    priority: str
    body: bytes
    idempotency: Idempotency | None = None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The event's id and its offset in each channel. ``duplicate`` is true when
    an earlier publish with the same idempotency key produced this result."""

    id: str
    offsets: dict[str, str]
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """What a channel holds after a position.

    ``events`` are the retained events after the asked position, oldest first,
    at most the asked limit (read again from the last one for more);
    ``top`` is the newest position of the channel; ``recovered`` says whether
    nothing between the asked position and ``top`` is missing.
    """

    top: Offset
    recovered: bool
    events: list[Event] = field(default_factory=list)


class EventSink(Protocol):
    """Receives the live feed of the channels a node subscribed to."""

    def on_event(self, event: Event) -> None:
        """A live event. Called in order per channel; must not block."""

    def on_reconnected(self) -> None:
        """The live feed was interrupted: events may have been lost since the
        last one delivered. The sink re-reads history to catch up."""


class Backend(Protocol):
    """Shared state of a fieldpush cluster. See the module docstring for the guarantees."""

    #: ``"memory"`` or ``"redis"``, for logs and ``/readyz``.
    name: str

    async def start(self, sink: EventSink) -> None:
        """Connect and begin passing the live feed to ``sink``."""

    async def close(self) -> None:
        """Stop the live feed and release connections."""

    async def publish(self, request: PublishRequest) -> PublishResult:
        """Store the event in every channel's history, then announce it live.

        Raises ``BackendUnavailable`` (nothing stored or not known to be stored)
        or ``IdempotencyConflict``."""

    async def read(self, channel: str, since: Offset | None, limit: int) -> History:
        """Events of ``channel`` after ``since`` (none when ``since`` is None), at
        most ``limit``, with the channel's newest position and the recovery verdict."""

    async def subscribe(self, channel: str) -> None:
        """Start this node's live feed of ``channel``. When it returns, every
        event published afterwards reaches the sink. Called once per channel
        by the hub, which counts local subscribers."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop this node's live feed of ``channel``."""

    async def ready(self) -> bool:
        """Whether the backend can store and announce events now."""
