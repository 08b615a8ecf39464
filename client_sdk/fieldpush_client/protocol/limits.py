"""Sizes the protocol itself sets (docs/protocol.md 1.5, 2.1-2.7, 3.1-3.2).

These are properties of the wire format, the same on every node; what an
operator may tune (frame bytes, subscriptions, mutations per ``mutate``) is a
server setting instead, and may only be stricter than what is here. Lengths
count characters. Every public name here is a limit (``MAX_*``), and the
package exports each of them (:mod:`fieldpush_client.protocol`).
"""

from __future__ import annotations

from typing import Final

#: A channel name, kind and id together (``team:north``).
MAX_CHANNEL_LENGTH: Final = 200
#: ``refresh.token`` (a JWT; real ones are far shorter).
MAX_TOKEN_LENGTH: Final = 8192
#: ``hello.device``.
MAX_DEVICE_LENGTH: Final = 128
#: ``hello.app``: the app and SDK version (``dealer-app/2.3 fieldpush_client/0.1.0``).
MAX_APP_LENGTH: Final = 100
#: An offset a client sends back (``hello.subs`` values, ``subscribe.since``).
MAX_OFFSET_LENGTH: Final = 200
#: A ``mid``, a record type and a record id.
MAX_ID_LENGTH: Final = 200
#: Mutations in one ``mutate`` (servers may accept fewer: ``sync_max_mutations``).
MAX_MUTATIONS: Final = 10_000
#: A ``pull`` cursor (opaque; the server's are much shorter).
MAX_CURSOR_LENGTH: Final = 1000
#: Items of a ``pull``'s ``classes`` (there are two classes; repeats are allowed up to this).
MAX_PULL_CLASSES: Final = 8
#: ``device`` in HTTP bodies (``POST /v1/poll``, ``POST /v1/ack``).
MAX_HTTP_DEVICE_LENGTH: Final = 200
#: Event ids in one ``POST /v1/ack``, and the length of each.
MAX_ACK_IDS: Final = 1000
MAX_EVENT_ID_LENGTH: Final = 64
#: ``kind`` and ``idempotency_key`` of ``POST /v1/publish``.
MAX_KIND_LENGTH: Final = 128
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 200
#: ``ack_deadline_s`` of ``POST /v1/publish``: a week.
MAX_ACK_DEADLINE_S: Final = 7 * 24 * 3600
#: The deepest nesting of arrays and objects (maps) in one message or HTTP
#: body; the message itself is depth 1. Deeper: close 1007 / 400.
MAX_DEPTH: Final = 32
