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
from client_sdk.http import DispatcherClient, PollReply, PublishReply
from client_sdk.protocol import EventMsg
from client_sdk.store import MemoryOffsetStore, OffsetStore

__all__ = [
    "ConnectionClosedFatal",
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
    "RequestError",
    "RequestTimeout",
    "Unauthorized",
    "backoff_delays",
]
