"""fieldpush client SDK: what a phone app, a test harness or a load test embeds.

It has no server dependencies; the wire codec in :mod:`client_sdk.protocol` is
shared with the server.
"""

from client_sdk.backoff import backoff_delays
from client_sdk.client import PushClient
from client_sdk.errors import (
    ConnectionClosedFatal,
    FieldpushClientError,
    NotConnected,
    PublishError,
    RequestError,
    RequestTimeout,
    Unauthorized,
)
from client_sdk.http import (
    ChannelPresence,
    DevicePresence,
    DispatcherClient,
    PollReply,
    PublishReply,
    Receipt,
    Receipts,
    UserPresence,
)
from client_sdk.protocol import EventMsg
from client_sdk.store import MemoryOffsetStore, OffsetStore
from client_sdk.sync import QueuedEdit, SyncClient, SyncStore

__all__ = [
    "ChannelPresence",
    "ConnectionClosedFatal",
    "DevicePresence",
    "DispatcherClient",
    "EventMsg",
    "FieldpushClientError",
    "MemoryOffsetStore",
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
    "SyncClient",
    "SyncStore",
    "Unauthorized",
    "UserPresence",
    "backoff_delays",
]
