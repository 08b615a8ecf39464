"""The session's protocol rules that need no I/O: rate limit, subscriptions,
token refresh, welcome.

Pure decisions, each a function of its inputs (and of an injected clock for
the rate limit), so they are tested without sockets; the session
(:mod:`fieldpush.delivery.session`) applies them and does the I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fieldpush.identity.auth import Identity
from fieldpush.identity.policy import may_subscribe
from fieldpush_client.protocol import ErrorCode, Welcome

__all__ = [
    "Rate",
    "RateLimit",
    "Refusal",
    "SubscriptionPlan",
    "plan_subscriptions",
    "refresh_due_at",
    "refuse_refresh",
    "refuse_subscribe",
    "refuse_unsubscribe",
    "revoked_channels",
    "user_channel",
    "welcome",
]


def user_channel(identity: Identity) -> str:
    """The channel every connection of that user is subscribed to without asking."""
    return f"user:{identity.user}"


class Rate(enum.Enum):
    """The rate limit's verdict on one inbound message."""

    #: Handle it.
    ALLOWED = enum.auto()
    #: Answer ``error`` ``rate_limited`` (the first of a run is worth a log line).
    REFUSED = enum.auto()
    #: Close the connection (4029): it went on sending too fast.
    CLOSE = enum.auto()


class RateLimit:
    """Token bucket of inbound messages: ``per_s`` refill, ``burst`` capacity.

    A message that finds no token is refused; more than ``burst`` refusals in
    a row close the connection; any allowed message ends the run."""

    __slots__ = ("_burst", "_clock", "_per_s", "at", "strikes", "tokens")

    def __init__(self, per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self._per_s = per_s
        self._burst = burst
        self._clock = clock
        self.tokens = float(burst)
        self.at = clock()
        #: Refusals in a row.
        self.strikes = 0

    def take(self) -> Rate:
        """Spend a token on one message, or say why not."""
        now = self._clock()
        self.tokens = min(float(self._burst), self.tokens + (now - self.at) * self._per_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.strikes = 0
            return Rate.ALLOWED
        self.strikes += 1
        return Rate.CLOSE if self.strikes > self._burst else Rate.REFUSED


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the ``error`` to answer (the connection stays)."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class SubscriptionPlan:
    """The channels of a ``hello``: those to open (the own user channel first,
    then in the order asked), with the offset to resume from, and those refused."""

    wanted: dict[str, str | None]
    allowed: list[str]
    refused: list[str]


def plan_subscriptions(
    identity: Identity, asked: Mapping[str, str | None], limit: int
) -> SubscriptionPlan:
    """Decide ``hello.subs``: a channel is refused when the identity may not
    subscribe to it or when ``limit`` channels are already allowed. The own
    user channel is always first, so it always fits."""
    wanted: dict[str, str | None] = {user_channel(identity): None, **asked}
    allowed: list[str] = []
    refused: list[str] = []
    for channel in wanted:
        if may_subscribe(identity, channel) and len(allowed) < limit:
            allowed.append(channel)
        else:
            refused.append(channel)
    return SubscriptionPlan(wanted, allowed, refused)


def refuse_subscribe(
    identity: Identity, channel: str, subscribed: Collection[str], limit: int
) -> Refusal | None:
    """Why a ``subscribe`` to ``channel`` is refused, or None when it may go ahead."""
    if channel in subscribed:
        return Refusal(ErrorCode.BAD_REQUEST, f"already subscribed to {channel}")
    if len(subscribed) >= limit:
        return Refusal(ErrorCode.FORBIDDEN, f"at most {limit} subscriptions per connection")
    if not may_subscribe(identity, channel):
        return Refusal(ErrorCode.FORBIDDEN, f"not allowed to subscribe to {channel}")
    return None


def refuse_unsubscribe(
    identity: Identity, channel: str, subscribed: Collection[str]
) -> Refusal | None:
    """Why an ``unsubscribe`` from ``channel`` is refused, or None."""
    if channel == user_channel(identity):
        return Refusal(ErrorCode.BAD_REQUEST, "the own user channel cannot be unsubscribed")
    if channel not in subscribed:
        return Refusal(ErrorCode.BAD_REQUEST, f"not subscribed to {channel}")
    return None


def refresh_due_at(expires_at: float, now: float, lead_s: float) -> float:
    """When (same clock as ``now``) a connection whose token expires at
    ``expires_at`` gets ``refresh_needed``: ``lead_s`` before it, but never
    earlier than half of the lifetime left at ``now``; ``now`` for a token
    that has no lifetime left (it is within the verifier's leeway)."""
    remaining = max(expires_at - now, 0.0)
    return now + remaining - min(lead_s, remaining / 2)


def refuse_refresh(current: Identity, fresh: Identity) -> Refusal | None:
    """Why a verified ``refresh`` token may not replace the connection's, or
    None: a connection belongs to one user (the token's ``sub``) for its life."""
    if fresh.user != current.user:
        return Refusal(ErrorCode.UNAUTHORIZED, "refresh refused: the token is another user's")
    return None


def revoked_channels(identity: Identity, subscribed: Collection[str]) -> list[str]:
    """The channels of ``subscribed`` that ``identity`` may no longer read
    (after a refresh changed its role or teams), in ``subscribed``'s order."""
    return [channel for channel in subscribed if not may_subscribe(identity, channel)]


def welcome(
    *,
    session: str,
    identity: Identity,
    node: str,
    heartbeat_s: float,
    poll: Mapping[str, float],
    plan: SubscriptionPlan,
    opened: Mapping[str, tuple[str, bool]],
) -> Welcome:
    """The ``welcome`` message; ``opened`` maps each allowed channel to its
    ``(offset, recovered)``. ``subs`` lists the channels in the order asked."""
    states: dict[str, dict[str, Any]] = {
        channel: {"error": ErrorCode.FORBIDDEN.value} for channel in plan.refused
    }
    for channel, (offset, recovered) in opened.items():
        states[channel] = {"offset": offset, "recovered": recovered}
    return Welcome(
        session=session,
        user=identity.user,
        role=identity.role,
        node=node,
        heartbeat_s=heartbeat_s,
        poll=dict(poll),
        subs={channel: states[channel] for channel in plan.wanted},
    )
