"""Fuzzing (issue 11): hostile input at every parser finds no unhandled exception.

Four targets, each fed by hypothesis, most of them many inputs per example:

- the protocol decoder (both codecs) and ``parse_client_message``: raw bytes,
  mutated encodings of valid messages, hostile dicts; only ``DecodeError`` and
  ``ProtocolError`` may come out;
- every HTTP body parser without I/O (``decode_body``, ``parse_publish``,
  ``parse_mutate``): only ``HTTPError`` (4xx) or ``ProtocolError``;
- a session through a real socket (``fieldpush serve`` on port 0):
  after any batch of messages the connection is open and answers a ping, and
  nothing it sent is an ``internal`` error;
- every HTTP route with a body, through the same node: never a 5xx.

The bounded run is part of the test command. ``FIELDPUSH_FUZZ_EXAMPLES``
multiplies the number of examples (default 1); a long run is
``FIELDPUSH_FUZZ_EXAMPLES=50 pytest -m fuzz`` (docs/security.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from fieldpush.http.publish import parse_publish
from fieldpush.http.toolkit import HTTPError, decode_body
from fieldpush.identity.auth import mint_token
from fieldpush.settings import Settings
from fieldpush_client.protocol import (
    DecodeError,
    ProtocolError,
    codec_for,
    parse_client_message,
    parse_mutate,
)
from tests.protocol.strategies import client_wires
from tests.support.cli import ServeProcess
from tests.support.raw import BODY_ROUTES
from tests.support.timing import scaled

pytestmark = pytest.mark.fuzz

SCALE = max(1, int(os.environ.get("FIELDPUSH_FUZZ_EXAMPLES", "1")))
#: Inputs per example at the cheap (Sans-I/O) targets.
BATCH = 100


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        # No shrinking: a failing batch is reported as it is (the assertion
        # names the input); shrinking a batch of a hundred takes minutes.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------ inputs

hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)])
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "\n", "\x00", "records:", "user:", "a" * 300, "team:\u2028x"])
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = ["type", "id", "token", "device", "subs", "channel", "since", "ids", "mutations",
         "cursor", "types", "limit", "mid", "rid", "fields", "hlc"]  # fmt: skip


@st.composite
def hostile_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid client message with some fields replaced, removed or added."""
    message: dict[str, Any] = dict(draw(client_wires))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(_KEYS))
        if draw(st.booleans()):
            message[key] = draw(hostile_values)
        else:
            message.pop(key, None)
    return message


def _encodings(messages: list[dict[str, Any]]) -> list[bytes]:
    """The messages in both codecs (those a codec cannot carry are left out)."""
    encoded = []
    for message in messages:
        with contextlib.suppress(OverflowError, ValueError, TypeError):
            encoded.append(json.dumps(message).encode())
        with contextlib.suppress(OverflowError, ValueError, TypeError):
            encoded.append(msgpack.packb(message))
    return encoded or [b"{}"]


def mutants(seeds: list[bytes], rng: random.Random, count: int) -> list[bytes]:
    """``count`` cheap variations of ``seeds``: bytes flipped, inserted or cut,
    two seeds spliced, nesting wrapped around, or plain random bytes."""
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        kind = rng.randrange(6)
        if kind == 0 and data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            at = rng.randint(0, len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == 2 and data:
            del data[rng.randrange(len(data)) :]
        elif kind == 3:
            other = rng.choice(seeds)
            data = data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]
        elif kind == 4:
            depth = rng.choice([1, 31, 32, 33, 1000, 60_000])
            opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b"\x91", b"")])
            data = bytearray(opener * depth + bytes(data) + closer * depth)
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 64)))
        out.append(bytes(data))
    return out


seeds = st.lists(hostile_messages(), min_size=1, max_size=4).map(_encodings)


# ------------------------------------------------------------------ Sans-I/O


@fuzz_settings(700)
@given(seeds, st.randoms(use_true_random=False))
def test_the_decoder_raises_only_decode_or_protocol_errors(
    encodings: list[bytes], rng: random.Random
) -> None:
    for frame in encodings + mutants(encodings, rng, BATCH):
        for subprotocol in ("fieldpush.v1.json", "fieldpush.v1.msgpack"):
            try:
                parse_client_message(codec_for(subprotocol).decode(frame))
            except (DecodeError, ProtocolError):
                pass
            except Exception as exc:
                raise AssertionError(f"{subprotocol} {frame[:300]!r}: {exc!r}") from exc


@fuzz_settings(300)
@given(seeds, st.randoms(use_true_random=False))
def test_http_body_parsers_raise_only_their_errors(
    encodings: list[bytes], rng: random.Random
) -> None:
    for raw in encodings + mutants(encodings, rng, BATCH):
        try:
            _parse_body(raw)
        except Exception as exc:
            raise AssertionError(f"{raw[:300]!r}: {exc!r}") from exc


def _parse_body(raw: bytes) -> None:
    """Every body parser on ``raw``; only their own errors may come out."""
    try:
        decoded = decode_body(raw)
    except HTTPError as exc:
        assert 400 <= exc.status < 500
        return
    try:
        parse_publish(decoded, 100)
    except HTTPError as exc:
        assert 400 <= exc.status < 500
    with contextlib.suppress(ProtocolError):
        parse_mutate({"type": "mutate", "id": decoded.get("id", 0), **decoded})


# ------------------------------------------------------------------ real socket


class FuzzNode:
    """``fieldpush serve`` in a process of its own (the hypothesis tests below
    are synchronous clients, and a node in this process would share its
    ``random`` state with hypothesis), and tokens for it."""

    def __init__(self, server: ServeProcess) -> None:
        self.server = server
        self.url, self.ws_url = server.url, server.ws_url

    def token(self, user: str, role: str, teams: tuple[str, ...] = ()) -> str:
        return mint_token(Settings(), user=user, role=role, teams=teams)


@pytest.fixture(scope="module")
def node() -> Iterator[FuzzNode]:
    limits = {
        "FIELDPUSH_RATE_LIMIT_PER_S": "1000000",
        "FIELDPUSH_RATE_LIMIT_BURST": "1000000",
        "FIELDPUSH_POLL_MAX_WAIT_S": "0.1",
        "FIELDPUSH_LOG_LEVEL": "warning",
    }
    server = ServeProcess("--port", "0", env=limits).start()
    try:
        yield FuzzNode(server)
    finally:
        assert server.stop() == 0, server.output
        assert "Traceback" not in server.output, server.output


KNOWN_REPLIES = frozenset(
    {
        "welcome",
        "subscribed",
        "unsubscribed",
        "pong",
        "error",
        "mutated",
        "changes",
        "event",
        "events",
    }
)


class SyncPhone:
    """A synchronous phone, past hello once :meth:`connect` returned."""

    def __init__(self, node: FuzzNode, binary: bool) -> None:
        self.node, self.binary = node, binary
        self.ws: ClientConnection | None = None
        self.stack = contextlib.ExitStack()

    def connect(self) -> ClientConnection:
        if self.ws is None:
            subprotocol = "fieldpush.v1.msgpack" if self.binary else "fieldpush.v1.json"
            self.ws = self.stack.enter_context(
                connect(self.node.ws_url, subprotocols=[subprotocol])  # type: ignore[list-item]
            )
            token = self.node.token("fuzz", "supervisor", ("north",))
            self.send({"type": "hello", "token": token, "device": "fuzz"})
            assert self.recv()["type"] == "welcome"
        return self.ws

    def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.ws.send(msgpack.packb(message) if self.binary else json.dumps(message))

    def recv(self) -> dict[str, Any]:
        assert self.ws is not None
        frame = self.ws.recv(timeout=scaled(10))
        value: dict[str, Any] = msgpack.unpackb(frame) if self.binary else json.loads(frame)
        return value


@pytest.fixture(scope="module", params=[False, True], ids=["json", "msgpack"])
def fuzz_phone(node: FuzzNode, request: pytest.FixtureRequest) -> Iterator[SyncPhone]:
    phone = SyncPhone(node, request.param)
    with phone.stack:
        yield phone


@fuzz_settings(150)
@given(st.lists(hostile_messages(), min_size=1, max_size=25))
def test_the_session_answers_any_messages_and_stays_open(
    fuzz_phone: SyncPhone, messages: list[dict[str, Any]]
) -> None:
    fuzz_phone.connect()
    sent = 0
    for message in messages:
        if message.get("type") == "hello":
            continue  # answered "already received": fine, but it adds nothing here
        try:
            fuzz_phone.send(message)
        except (OverflowError, ValueError):
            continue  # msgpack cannot carry it: a client could not send it either
        sent += 1
    fuzz_phone.send({"type": "ping", "id": -1})
    while True:
        reply = fuzz_phone.recv()  # raises if the server closed the connection
        assert reply.get("type") in KNOWN_REPLIES, reply
        assert reply.get("code") != "internal", reply
        if reply.get("type") == "pong" and reply.get("id") == -1:
            break


@pytest.fixture(scope="module")
def http(node: FuzzNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, timeout=scaled(10)) as client:
        yield client


@fuzz_settings(100)
@given(
    st.sampled_from(BODY_ROUTES),
    st.lists(hostile_messages() | hostile_values, min_size=1, max_size=5),
)
def test_http_routes_never_answer_5xx(
    node: FuzzNode, http: httpx.Client, route: tuple[str, str, str], bodies: list[Any]
) -> None:
    method, path, role = route
    headers = {"Authorization": f"Bearer {node.token('fuzz', role, ('north',))}"}
    for body in bodies:
        try:
            content = json.dumps(body).encode()
        except (OverflowError, ValueError):
            continue
        reply = http.request(method, path, content=content, headers=headers)
        assert reply.status_code < 500, (path, content[:200], reply.text)
