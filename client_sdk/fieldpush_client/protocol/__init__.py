"""The fieldpush wire protocol, v1, as one Sans-I/O layer for both sides.

Nothing here does I/O: no sockets, no ``await``, no clock. Bytes in, typed
messages out, and back. The server and the SDK import the same modules for
what they send and what they receive, so the two sides cannot drift::

    fieldpush_client.protocol
    ├── codes            CloseCode (+ FATAL_CLOSE_CODES, should_reconnect), ErrorCode, Priority
    ├── limits           lengths and counts the wire format sets (MAX_*)
    ├── channels         CHANNEL_KINDS, parse_channel, is_channel, user_channel
    ├── errors           DecodeError (close 1007), ProtocolError (error bad_request)
    ├── codec            subprotocols; JsonCodec, MsgpackCodec: dict <-> frame body
    ├── client_messages  Hello Subscribe Unsubscribe Ack Ping Mutate(Mutation) Pull
    │                    Refresh Wiped
    │                    parse_client_message,
    request_id_of, parse_mutate, parse_mutation (strict)
    ├── server_messages  Welcome Subscribed Unsubscribed EventMsg Events Pong ErrorMsg
    │                    Goaway RefreshNeeded Refreshed Wipe Mutated(MutationResult)
    │                    Changes(Change) UnknownMsg
    │                    parse_server_message (lenient: unknown types and fields pass)
    └── event_bytes      the events' pre-encoded fast path, the same messages as bytes

         encode                                    decode
    msg.to_wire() -> codec.encode() -> frame -> codec.decode() -> parse_*() -> msg

Every message type has ``to_wire()``, the exact dict docs/protocol.md (and
docs/protocol.md, extensions included) describes; the ``parse_*`` functions are
its inverse: ``parse(m.to_wire()) == m`` for every message, and
``parse(d).to_wire() == d`` for every valid message in canonical form (optional
fields left out rather than sent empty). Undecodable frames raise
:class:`DecodeError`; decodable but invalid messages :class:`ProtocolError`.

Dependencies inside the package point one way: ``codes``, ``limits`` and
``errors`` depend on nothing; ``channels`` and ``codec`` on those;
the two message modules on all of them but ``codec``; ``event_bytes`` on
nothing but the wire format it shares with ``server_messages``.
"""

from fieldpush_client.protocol.channels import (
    CHANNEL_KINDS,
    is_channel,
    parse_channel,
    user_channel,
)
from fieldpush_client.protocol.client_messages import (
    BATCH_CLASS,
    CORE_CLASS,
    PULL_CLASSES,
    Ack,
    ClientMessage,
    ClientRequest,
    Hello,
    InvalidMutation,
    Mutate,
    Mutation,
    Ping,
    Pull,
    Refresh,
    Subscribe,
    Unsubscribe,
    Wiped,
    parse_classes,
    parse_client_message,
    parse_mutate,
    parse_mutation,
    request_id_of,
)
from fieldpush_client.protocol.codec import (
    DEFAULT_SUBPROTOCOL,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    SUBPROTOCOLS,
    Codec,
    JsonCodec,
    MsgpackCodec,
    check_depth,
    codec_for,
)
from fieldpush_client.protocol.codes import (
    FATAL_CLOSE_CODES,
    CloseCode,
    ErrorCode,
    Priority,
    should_reconnect,
)
from fieldpush_client.protocol.digest import (
    BUCKETS,
    MAX_DIGEST_COUNT,
    MAX_DIGEST_TYPES,
    MAX_REPAIR_HELD,
    Digest,
    DriftReport,
    Repair,
    TypeDrift,
    bucket_of,
    canonical,
    parse_digest,
    parse_repair,
    record_hash,
)
from fieldpush_client.protocol.errors import DecodeError, ProtocolError
from fieldpush_client.protocol.event_bytes import (
    encode_body,
    event_payload,
    events_payload,
    json_event_item,
)
from fieldpush_client.protocol.limits import (
    MAX_ACK_DEADLINE_S,
    MAX_ACK_IDS,
    MAX_APP_LENGTH,
    MAX_CHANNEL_LENGTH,
    MAX_CURSOR_LENGTH,
    MAX_DEPTH,
    MAX_DEVICE_LENGTH,
    MAX_EVENT_ID_LENGTH,
    MAX_HTTP_DEVICE_LENGTH,
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_KIND_LENGTH,
    MAX_MUTATIONS,
    MAX_OFFSET_LENGTH,
    MAX_PULL_CLASSES,
    MAX_TOKEN_LENGTH,
)
from fieldpush_client.protocol.server_messages import (
    Change,
    Changes,
    ErrorMsg,
    EventMsg,
    Events,
    Goaway,
    Mutated,
    MutationResult,
    Pong,
    Refreshed,
    RefreshNeeded,
    ServerMessage,
    Subscribed,
    UnknownMsg,
    Unsubscribed,
    Welcome,
    Wipe,
    parse_server_message,
)

__all__ = [
    "BATCH_CLASS",
    "BUCKETS",
    "CHANNEL_KINDS",
    "CORE_CLASS",
    "DEFAULT_SUBPROTOCOL",
    "FATAL_CLOSE_CODES",
    "MAX_ACK_DEADLINE_S",
    "MAX_ACK_IDS",
    "MAX_APP_LENGTH",
    "MAX_CHANNEL_LENGTH",
    "MAX_CURSOR_LENGTH",
    "MAX_DEPTH",
    "MAX_DEVICE_LENGTH",
    "MAX_DIGEST_COUNT",
    "MAX_DIGEST_TYPES",
    "MAX_EVENT_ID_LENGTH",
    "MAX_HTTP_DEVICE_LENGTH",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_KIND_LENGTH",
    "MAX_MUTATIONS",
    "MAX_OFFSET_LENGTH",
    "MAX_PULL_CLASSES",
    "MAX_REPAIR_HELD",
    "MAX_TOKEN_LENGTH",
    "PULL_CLASSES",
    "SUBPROTOCOLS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "Ack",
    "Change",
    "Changes",
    "ClientMessage",
    "ClientRequest",
    "CloseCode",
    "Codec",
    "DecodeError",
    "Digest",
    "DriftReport",
    "ErrorCode",
    "ErrorMsg",
    "EventMsg",
    "Events",
    "Goaway",
    "Hello",
    "InvalidMutation",
    "JsonCodec",
    "MsgpackCodec",
    "Mutate",
    "Mutated",
    "Mutation",
    "MutationResult",
    "Ping",
    "Pong",
    "Priority",
    "ProtocolError",
    "Pull",
    "Refresh",
    "RefreshNeeded",
    "Refreshed",
    "Repair",
    "ServerMessage",
    "Subscribe",
    "Subscribed",
    "TypeDrift",
    "UnknownMsg",
    "Unsubscribe",
    "Unsubscribed",
    "Welcome",
    "Wipe",
    "Wiped",
    "bucket_of",
    "canonical",
    "check_depth",
    "codec_for",
    "encode_body",
    "event_payload",
    "events_payload",
    "is_channel",
    "json_event_item",
    "parse_channel",
    "parse_classes",
    "parse_client_message",
    "parse_digest",
    "parse_mutate",
    "parse_mutation",
    "parse_repair",
    "parse_server_message",
    "record_hash",
    "request_id_of",
    "should_reconnect",
    "user_channel",
]
