"""The backend interface and the data it exchanges with the rest of the server.

Delivery guarantees, which every implementation must keep and the contract
suite checks:

- **Durable before acknowledged.** :meth:`Backend.publish` returns only after the
  event is in every target channel's history. When it cannot store the event it
  raises :class:`~fieldpush.errors.BackendUnavailable`; it never returns an offset
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

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeAlias

from fieldpush.audit.chain import AuditDraft, AuditEntry, Head, Unreadable
from fieldpush.backend.directory import Directory
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset

__all__ = [
    "AccessListener",
    "AccessSnapshot",
    "AccountChange",
    "AccountState",
    "Accounts",
    "Applied",
    "AuditLog",
    "Backend",
    "ChannelRead",
    "CommitStatus",
    "Device",
    "DeviceState",
    "Devices",
    "Due",
    "EventSink",
    "History",
    "HistoryReader",
    "Idempotency",
    "Ledger",
    "Presence",
    "PresenceEntry",
    "PublishRequest",
    "PublishResult",
    "Publisher",
    "Receipt",
    "ReceiptStep",
    "ReceiptStepKind",
    "Receipts",
    "RecordStore",
    "RecordWrite",
    "Replayed",
    "RevokedToken",
    "SessionOpened",
    "SessionOpener",
    "SessionOpening",
    "Stale",
    "StoredRecord",
    "Tracking",
    "WebhookState",
]


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Makes a publish safe to retry: ``(publisher, key)`` identifies it for the
    configured time; ``fingerprint`` identifies the request body."""

    publisher: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Tracking:
    """Makes a (critical) event tracked: pending for its recipients until acked,
    with receipts, and escalated when not acked within ``ack_deadline_ms``
    (0: never escalated)."""

    kind: str
    ack_deadline_ms: int


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """One event to store in every channel of ``channels``. ``origin`` is the
    ``(user, device)`` whose record change the event announces (that device
    does not get it back); it is stored with the event and restored on read."""

    channels: tuple[str, ...]
    event_id: str
    priority: str
    body: bytes
    idempotency: Idempotency | None = None
    tracking: Tracking | None = None
    origin: tuple[str, str] | None = None


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


@dataclass(frozen=True, slots=True)
class Receipt:
    """One recipient user of a tracked event. ``device`` is the device that acked,
    else the first one it was delivered to. Times are ms since the epoch."""

    user: str
    device: str | None = None
    delivered_at: int | None = None
    acked_at: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "device": self.device,
            "delivered_at": self.delivered_at,
            "acked_at": self.acked_at,
        }


class ReceiptStepKind(enum.StrEnum):
    """What happened to a tracked event at one device."""

    DELIVERED = "delivered"
    ACKED = "acked"


@dataclass(frozen=True, slots=True)
class ReceiptStep:
    """A tracked event was ``delivered`` to, or ``acked`` by, a device of a user
    at ``ms``; ``receipt_id`` is the id of the receipt event, if it is a change."""

    step: ReceiptStepKind
    event: str
    user: str
    device: str
    ms: int
    receipt_id: str


@dataclass(frozen=True, slots=True)
class Receipts:
    """A tracked event and the state of each of its recipients, sorted by user."""

    id: str
    kind: str
    published_at: int
    deadline_at: int | None
    recipients: list[Receipt]


@dataclass(frozen=True, slots=True)
class Due:
    """A tracked event whose ack deadline passed, claimed by this node for a
    lease; ``unacked`` lists the recipients that did not ack."""

    id: str
    kind: str
    unacked: list[str]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One open connection of a user, as seen cluster-wide. ``last_seen`` is when
    its node last vouched for it (connections answer the node's heartbeat)."""

    user: str
    session: str
    device: str
    node: str
    since: int
    last_seen: int


@dataclass(frozen=True, slots=True)
class ChannelRead:
    """One channel's read within :meth:`SessionOpener.open_session`: its newest
    position and, when ``since`` is set, at most ``limit`` events after it (as
    :meth:`HistoryReader.read`)."""

    channel: str
    since: Offset | None
    limit: int


@dataclass(frozen=True, slots=True)
class SessionOpening:
    """What a new session (past its token check, its live feeds subscribed) asks
    of the backend in one step: the per-user cap, its presence, its audience and
    the reads its ``welcome`` and replays need."""

    #: The new session; ``entry.user`` is whose cap, presence and pending events.
    entry: PresenceEntry
    #: The channels it is subscribed to, for presence.
    channels: list[str]
    #: Channels whose known audience the user joins (:meth:`Ledger.note_audience`).
    audience: list[str]
    reads: list[ChannelRead]
    #: Most live sessions of the user, this one included (0: no cap).
    cap: int
    #: Over the cap, refuse this session (policy ``newest``); else admit it and
    #: let the caller close the oldest ones (policy ``oldest``).
    refuse_over_cap: bool
    #: ``hello.app`` (``""``: not sent), for the device registry.
    app: str = ""
    #: Devices the registry keeps per user at most; a new one beyond evicts the
    #: ``active`` device seen least recently (0: no limit).
    max_devices: int = 0


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """The answer to a :class:`SessionOpening`."""

    #: False only when ``refuse_over_cap`` and the cap is reached: then nothing
    #: was written, and ``histories`` and ``pending`` are empty.
    admitted: bool
    #: The user's other live sessions before this one, oldest first.
    others: list[PresenceEntry]
    #: One per :attr:`SessionOpening.reads`, in order.
    histories: list[History]
    #: The user's pending tracked events, as :meth:`Ledger.pending`.
    pending: list[Event]
    #: The session's device as the registry holds it after this hello (when
    #: admitted: ``last_seen``, ``node`` and ``app`` are this hello's).
    device: Device | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the cluster knows of one user's access (docs/security.md,
    "Revocation"). A user never changed has the defaults: active, every token
    valid, role and teams from the token."""

    user: str
    active: bool = True
    #: Tokens issued (``iat``) before this time, ms since the epoch, are refused (0: none).
    tokens_valid_after: int = 0
    #: The directory's role for the user (SCIM); None: the token's ``role`` claim.
    role: str | None = None
    #: The directory's teams for the user (SCIM); None: the token's ``teams`` claim.
    teams: tuple[str, ...] | None = None
    #: When it last changed (ms since the epoch; 0: never) and who changed it.
    changed_at: int = 0
    changed_by: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "user": self.user,
            "active": self.active,
            "tokens_valid_after": self.tokens_valid_after,
            "role": self.role,
            "teams": None if self.teams is None else list(self.teams),
            "changed_at": self.changed_at,
            "changed_by": self.changed_by,
        }


#: Marks a field of :class:`AccountChange` that the change leaves as it is.
KEEP: Final = "keep"


@dataclass(frozen=True, slots=True)
class AccountChange:
    """A change of one user's :class:`AccountState`, applied atomically to
    what is stored (so two admins changing different fields lose nothing).
    ``active``: set (None: keep); ``tokens_valid_after``: raised to at least
    this (never lowered; 0: keep); ``role`` and ``teams``: set, None clears,
    :data:`KEEP` keeps."""

    user: str
    at: int
    by: str
    active: bool | None = None
    tokens_valid_after: int = 0
    role: str | Literal["keep"] | None = KEEP
    teams: tuple[str, ...] | Literal["keep"] | None = KEEP


@dataclass(frozen=True, slots=True)
class RevokedToken:
    """A token revoked by its ``jti``; remembered until ``until`` (ms since the
    epoch), after which the token would have expired anyway."""

    jti: str
    until: int


@dataclass(frozen=True, slots=True)
class AccessSnapshot:
    """Everything :class:`Accounts` holds: each user whose state was ever
    changed, and the revoked tokens not yet past their ``until``."""

    accounts: list[AccountState]
    revoked: list[RevokedToken]


class AccessListener(Protocol):
    """Hears every node's access changes (:meth:`Accounts.listen`)."""

    def on_account(self, state: AccountState) -> None:
        """A user's state changed (on any node); it is the whole new state."""

    def on_revoked(self, token: RevokedToken) -> None:
        """A token was revoked (on any node)."""

    def on_wipe(self, user: str, device: str, wipe_id: str) -> None:
        """A device was marked for wipe (on any node): tell it if it is here."""

    def on_access_resync(self) -> None:
        """Changes may have been missed (the live feed was interrupted): read
        :meth:`Accounts.snapshot` again."""


class Accounts(Protocol):
    """Users' access, cluster-wide: disabled accounts, ``tokens_valid_after``,
    revoked tokens, the directory's role and teams.

    Guarantees: each change is stored before the call returns and then
    announced to every node's listener, this node's included (before the
    call returns on the memory backend); announcements may be lost (Redis
    pub/sub), and after an interruption the listener is told to resync, so a
    node that re-reads :meth:`snapshot` after :meth:`AccessListener.on_access_resync`
    and at an interval misses no change for longer than that interval."""

    def listen(self, listener: AccessListener) -> None:
        """Announcements go to ``listener``. Register before :meth:`Backend.start`."""

    async def change(self, change: AccountChange) -> AccountState:
        """Apply ``change`` to the user's stored state and announce the result."""

    async def revoke(self, token: RevokedToken) -> None:
        """Remember ``token`` as revoked until its ``until`` and announce it."""

    async def state(self, user: str) -> AccountState:
        """The user's stored state (the defaults when never changed)."""

    async def snapshot(self) -> AccessSnapshot:
        """Every changed user's state and every revoked token still remembered."""


class DeviceState(enum.StrEnum):
    """Where a device is in its life (docs/compliance.md, "Devices")."""

    ACTIVE = "active"
    WIPE_PENDING = "wipe_pending"
    WIPED = "wiped"


@dataclass(frozen=True, slots=True)
class Device:
    """One device of a user, as the registry keeps it: times in ms since the
    epoch, ``last_seen`` its latest ``hello``, ``node`` and ``app`` that
    hello's; ``skew_ms`` its last reported clock offset (docs/sync.md, "Clock
    guarantees"; None: none reported yet)."""

    user: str
    device: str
    first_seen: int
    last_seen: int
    node: str
    app: str
    state: DeviceState = DeviceState.ACTIVE
    #: The wipe asked for (``wipe_pending``, ``wiped``): the id of its ``wipe``.
    wipe_id: str | None = None
    skew_ms: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "node": self.node,
            "app": self.app,
            "state": self.state.value,
            "wipe_id": self.wipe_id,
            "skew_ms": self.skew_ms,
        }


class Devices(Protocol):
    """The device registry: every device a user opened a session from,
    cluster-wide. Written by :meth:`SessionOpener.open_session`."""

    async def of_user(self, user: str) -> list[Device]:
        """The user's devices, first seen first."""

    async def mark_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        """Mark a registered device ``wipe_pending`` with ``wipe_id`` and
        announce it to every node's :meth:`AccessListener.on_wipe` (a device
        already ``wiped`` stays so, unannounced). None: no such device."""

    async def confirm_wipe(self, user: str, device: str, wipe_id: str) -> Device | None:
        """The device answered ``wiped`` ``wipe_id``: ``wiped`` if that is the
        wipe pending. Returns the device as stored (None: no such device)."""

    async def note_skew(self, user: str, device: str, skew_ms: int) -> None:
        """Set a registered device's ``skew_ms``, atomically with its other
        fields (a device never registered gets no entry). Raises
        BackendUnavailable when the store cannot be reached."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as the store holds it: its commit count and its encoded state."""

    version: int
    blob: bytes


@dataclass(frozen=True, slots=True)
class RecordWrite:
    """The commit of one mutation (see :meth:`RecordStore.commit`).

    ``result_key`` names the mutation (user, device, ``mid``; None: not
    idempotent) and ``result`` is its encoded result. ``record`` is the record
    key ``<type>:<rid>`` the mutation was judged against: the write applies
    only if that record is still at ``expected_version``, and then ``blob``
    (if not empty) replaces it. ``log`` entries are appended to the change log.
    ``files`` are file ids the new record references: each is indexed to
    ``record`` (:meth:`RecordStore.file_records`), with the rest of the write.
    """

    result_key: str | None
    result: bytes
    record: str | None = None
    expected_version: int = 0
    blob: bytes = b""
    log: tuple[bytes, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    """:meth:`RecordStore.commit` status: the write was applied."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """:meth:`RecordStore.commit` status: nothing was applied, because a result
    is already kept for the write's ``result_key`` (a replay of its ``mid``);
    ``result`` is that result."""

    result: bytes


@dataclass(frozen=True, slots=True)
class Stale:
    """:meth:`RecordStore.commit` status: nothing was applied, because the record
    is not at ``expected_version`` (another node changed it), or an earlier
    write of the same call on the same record was not applied."""


#: What :meth:`RecordStore.commit` says of each write.
CommitStatus: TypeAlias = Applied | Replayed | Stale


class RecordStore(Protocol):
    """Records, mutation results and the change log of delta sync.

    Guarantees: each :class:`RecordWrite` is applied atomically (record,
    result and log entries together, or nothing) and only if the record is
    still at ``expected_version`` (compare-and-set across nodes); writes of
    one :meth:`commit` are applied in order.

    Log positions are opaque strings stamped by the store: callers only store
    them and pass them back to :meth:`read_log`, which reads the entries
    *after* one. Each entry's position comes after the previous entry's
    (the log is totally ordered), and a position names the log it came
    from, so that one from a log that was lost (a restarted memory store, a
    flushed Redis) is recognised as expired rather than misread. Their
    format belongs to the store (memory ``<epoch>:<ms>-<seq>``, Redis
    ``<epoch>:<stream id>:<n>``) and may change.
    """

    async def load(
        self, records: list[str], result_keys: list[str]
    ) -> tuple[list[StoredRecord | None], list[bytes | None]]:
        """The records (None: never written) and the kept results (None: unknown)."""

    async def commit(self, writes: list[RecordWrite]) -> list[CommitStatus]:
        """Apply ``writes`` in order; one :data:`CommitStatus` per write."""

    async def log_top(self) -> str:
        """The newest position of the change log; for an empty log, a position
        that :meth:`read_log` reads the whole log after (memory
        ``<epoch>:0-0``; Redis ``<epoch>:0-0:0``, ``:0-0:0`` before the
        first commit sets its epoch)."""

    async def read_log(self, after: str | None, limit: int) -> tuple[list[tuple[str, bytes]], bool]:
        """Up to ``limit`` ``(position, entry)`` of the log after ``after``
        (None: from the oldest retained), oldest first, and whether entries
        after ``after`` were already trimmed or the log ``after`` came from
        was lost (then the entries start at the oldest one retained).
        ``limit=0`` reads no entries and still answers that flag:
        ``([], expired)``. InvalidPosition if ``after`` is not a position
        this kind of store writes."""

    async def scan(
        self, record_type: str, after_rid: str, limit: int
    ) -> list[tuple[str, StoredRecord]]:
        """Up to ``limit`` records of a type (deleted ones included) with an id
        greater than ``after_rid`` (``""``: from the first), in id order."""

    async def file_records(self, file_id: str) -> list[str]:
        """The record keys ``<type>:<rid>`` an applied write indexed
        ``file_id`` to (:attr:`RecordWrite.files`), sorted. A superset: a
        record that no longer references the file stays listed; the caller
        reads the record to know."""


class EventSink(Protocol):
    """Receives the live feed of the channels a node subscribed to."""

    def on_event(self, event: Event) -> None:
        """A live event. Called in order per channel; must not block."""

    def on_reconnected(self) -> None:
        """The live feed was interrupted: events may have been lost since the
        last one delivered. The sink re-reads history to catch up."""


class HistoryReader(Protocol):
    """Reads channels' histories (the source of truth for replays and polls)."""

    async def read(self, channel: str, since: Offset | None, limit: int) -> History:
        """Events of ``channel`` after ``since`` (none when ``since`` is None), at
        most ``limit``, with the channel's newest position and the recovery verdict."""


class Publisher(Protocol):
    """Stores and announces events (durable before acknowledged)."""

    async def publish(self, request: PublishRequest) -> PublishResult:
        """Store the event in every channel's history, then announce it live.

        Raises ``BackendUnavailable`` (nothing stored or not known to be stored)
        or ``IdempotencyConflict``."""


class SessionOpener(Protocol):
    """Opens sessions in one backend step (one round trip on Redis)."""

    async def open_session(self, opening: SessionOpening) -> SessionOpened:
        """Apply the per-user cap to the user's live sessions; when admitted, in
        the same atomic step, join the session to presence
        (:meth:`Presence.join`), record its audience
        (:meth:`Ledger.note_audience`), register its device (:class:`Devices`:
        first seen kept, last seen, node and app this hello's, the state
        kept), and answer the reads, the user's pending events and the
        device. Call it only after the live feeds of the channels read are
        subscribed (what is published then is in the read or live).
        Raises ``BackendUnavailable`` (then it may or may not have written)."""


class Backend(HistoryReader, Publisher, SessionOpener, Protocol):
    """Shared state of a fieldpush cluster. See the module docstring for the guarantees."""

    #: ``"memory"`` or ``"redis"``, for logs and ``/readyz``.
    name: str

    @property
    def ledger(self) -> Ledger:
        """Tracked events: pending, receipts, deadlines."""

    @property
    def presence(self) -> Presence:
        """Who is connected, cluster-wide."""

    @property
    def records(self) -> RecordStore:
        """Records and the change log of delta sync."""

    @property
    def directory(self) -> Directory:
        """The SCIM user resources (:mod:`fieldpush.backend.directory`)."""

    @property
    def accounts(self) -> Accounts:
        """Users' access: disabled accounts, revoked tokens."""

    @property
    def devices(self) -> Devices:
        """The device registry."""

    @property
    def audit(self) -> AuditLog:
        """The tamper-evident audit trail."""

    @property
    def webhook(self) -> WebhookState:
        """The change-feed webhook's lease and delivered cursor."""

    async def start(self, sink: EventSink) -> None:
        """Connect and begin passing the live feed to ``sink``. A kick handler
        registered with :meth:`Presence.on_kick` before is listening once this
        returns."""

    async def close(self) -> None:
        """Stop the live feed and release connections."""

    async def subscribe(self, channel: str) -> None:
        """Start this node's live feed of ``channel``. When it returns, every
        event published afterwards reaches the sink. Called once per channel
        by the hub, which counts local subscribers."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop this node's live feed of ``channel``."""

    async def ready(self) -> bool:
        """Whether the backend can store and announce events now."""


class AuditLog(Protocol):
    """The audit trail (:mod:`fieldpush.audit.chain`), shared by every node.

    Guarantees: one chain per cluster; :meth:`append` is atomic (all of its
    entries follow the head, contiguously, or none is stored) even with
    several writers; entries are never trimmed nor changed.
    """

    async def append(self, drafts: list[AuditDraft]) -> list[AuditEntry]:
        """Chain ``drafts`` after the current head and store them, in one
        atomic step; returns the stored entries. Raises
        ``BackendUnavailable`` (then it may or may not have stored them)."""

    async def read(self, from_seq: int, limit: int) -> list[AuditEntry | Unreadable]:
        """Up to ``limit`` entries from ``seq`` ``from_seq`` on, in order. A
        stored line that is not the entry of its place (changed outside
        fieldpush) is answered as :class:`~fieldpush.audit.chain.Unreadable`
        in its place, never skipped and never failing the read."""

    async def head(self) -> Head:
        """The trail's size and last hash."""


class WebhookState(Protocol):
    """Who delivers the change-feed webhook, and how far it got
    (:mod:`fieldpush.sync.webhook`).

    Guarantees: at most one holder of the lease at a time, cluster-wide; each
    grant gets a fencing token greater than every earlier one; the cursor is
    changed only by :meth:`advance` with the lease's current holder and
    token, so a node that lost its lease (a pause longer than the lease) can
    never move the cursor. On Redis both live under the node's key prefix and
    survive restarts; in memory they live as long as the process (as does the
    change log they point into).
    """

    async def hold(self, holder: str, ttl_ms: int) -> int | None:
        """Take the lease for ``ttl_ms`` when it is free or expired, or renew
        it when ``holder`` has it: its fencing token. None: another holder
        has it."""

    async def release(self, holder: str, token: int) -> None:
        """Give the lease up if ``holder`` still has it with ``token``."""

    async def cursor(self) -> str | None:
        """The feed cursor after the last delivered entry (None: none yet)."""

    async def advance(self, holder: str, token: int, cursor: str) -> bool:
        """Store ``cursor`` if ``holder`` has the lease with ``token``
        (compare-and-set); False, nothing changed, otherwise."""


class Ledger(Protocol):
    """Tracked (critical) events: who must ack them, receipts, deadlines.

    Guarantees: the tracking of an event is stored atomically with the event
    (``Backend.publish``), so a 201 for a critical event means it is pending
    for its recipients and its deadline is set. The recipients of a channel
    are its known audience at publish time: the user of ``user:<id>``, the
    users recorded with :meth:`note_audience` for other channels; a user that
    is not among them but gets the event (a later member) is added on its
    first delivery or ack. Records expire ``receipts_ttl`` after the publish.
    """

    async def note_audience(self, pairs: list[tuple[str, str]]) -> None:
        """Record ``(channel, user)``: that user is a recipient of that channel."""

    async def record(self, steps: list[ReceiptStep]) -> None:
        """Record deliveries and acks of tracked events (steps of other events are
        ignored), in one atomic step. An ack ends the event's pending state for
        that user. Each user's first delivery and first ack of an event is a
        change; the changes of one call are published to the ``dispatch``
        channel as one ``receipt`` event per tracked event, data ``{event,
        kind, receipts: [receipt, ...]}`` sorted by user (id: the
        ``receipt_id`` of the event's first changed step). Idempotent."""

    async def pending(self, user: str) -> list[Event]:
        """The tracked events ``user`` has not acked, oldest first, each as it was
        published to the channel through which the user receives it."""

    async def receipts(self, event_id: str) -> Receipts | None:
        """The event's receipts, or None when it is not (or no longer) tracked."""

    async def claim_due(self, lease_ms: int, limit: int) -> list[Due]:
        """Claim up to ``limit`` events whose deadline passed: no other node gets
        them for ``lease_ms``. Events every recipient acked are settled instead."""

    async def settle(self, event_id: str) -> None:
        """The event was escalated: remove its deadline."""


class Presence(Protocol):
    """Who is connected, cluster-wide. Entries of a node that stopped renewing
    (:meth:`beat`) vanish once its ``ttl_ms`` passed."""

    async def join(self, entry: PresenceEntry, channels: list[str]) -> None:
        """A session opened, subscribed to ``channels``."""

    async def leave(self, entry: PresenceEntry, channels: list[str]) -> None:
        """A session subscribed to ``channels`` closed; notes the user's last seen."""

    async def subscribe(self, entry: PresenceEntry, channel: str) -> None:
        """An open session subscribed to one more channel."""

    async def unsubscribe(self, entry: PresenceEntry, channel: str) -> None:
        """An open session left one channel."""

    async def beat(self, node: str, ttl_ms: int) -> None:
        """The node is alive: its entries stay for ``ttl_ms`` more."""

    async def gone(self, node: str) -> None:
        """The node stopped: its entries no longer count."""

    async def sessions_of(self, user: str) -> list[PresenceEntry]:
        """The user's live sessions, oldest first (what the per-user cap counts)."""

    async def of_user(self, user: str) -> tuple[list[PresenceEntry], int | None]:
        """The user's live sessions, oldest first, and when the user was last seen
        (now, when online; the last disconnect otherwise; None: never)."""

    async def of_channel(self, channel: str) -> list[PresenceEntry]:
        """The live sessions subscribed to ``channel``."""

    async def kick(self, node: str, session: str) -> None:
        """Ask ``node`` to close ``session`` (the per-user connection cap)."""

    def on_kick(self, node: str, handler: Callable[[str], None]) -> None:
        """Requests to close a session of ``node`` (this process's node) go to
        ``handler``, with the session id. Register before :meth:`Backend.start`."""
