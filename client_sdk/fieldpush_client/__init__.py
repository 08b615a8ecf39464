"""fieldpush client SDK: what a phone app, a test harness or a load test embeds.

It has no server dependencies; the wire codec in :mod:`fieldpush_client.protocol` is
shared with the server.
"""

__version__ = "0.1.0"

from fieldpush_client.backoff import backoff_delays
from fieldpush_client.client import PushClient, TokenProvider
from fieldpush_client.errors import (
    AccessRevoked,
    ConnectionClosedFatal,
    FieldpushClientError,
    NotConnected,
    PublishError,
    RequestError,
    RequestTimeout,
    StoreError,
    StoreIntegrityError,
    StoreKeyError,
    Unauthorized,
    WebhookSignatureError,
)
from fieldpush_client.http import (
    ChannelPresence,
    DevicePresence,
    DispatcherClient,
    PollReply,
    PublishReply,
    Receipt,
    Receipts,
    UserPresence,
)
from fieldpush_client.protocol import EventMsg
from fieldpush_client.store import MemoryOffsetStore, OffsetStore
from fieldpush_client.sync import NeedsAttention, QueuedEdit, SyncClient, SyncStore
from fieldpush_client.vault import KeySource, generate_key

__all__ = [
    "AccessRevoked",
    "ChannelPresence",
    "ConnectionClosedFatal",
    "DevicePresence",
    "DispatcherClient",
    "EventMsg",
    "FieldpushClientError",
    "KeySource",
    "MemoryOffsetStore",
    "NeedsAttention",
    "NotConnected",
    "OffsetStore",
    "PollReply",
    "PublishError",
    "PublishReply",
    "PushClient",
    "QueuedEdit",
    "Receipt",
    "Receipts",
    "RequestError",
    "RequestTimeout",
    "StoreError",
    "StoreIntegrityError",
    "StoreKeyError",
    "SyncClient",
    "SyncStore",
    "TokenProvider",
    "Unauthorized",
    "UserPresence",
    "WebhookSignatureError",
    "__version__",
    "backoff_delays",
    "generate_key",
]
