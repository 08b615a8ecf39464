"""The WebSocket gateway: one :class:`Connection` per phone socket.

uvicorn parses every HTTP request; when one asks to upgrade to WebSocket it
hands the raw transport to the ``ws`` protocol class it was configured with,
which is :class:`Connection`. So the HTTP API runs through Starlette while the
socket path is plain asyncio: the ``websockets`` Sans-I/O protocol parses the
handshake and the client's frames, and the server writes its own frames
straight to the transport. Event frames are pre-encoded once per node (see
:mod:`fieldpush.events.event`), so writing one to a phone is a single
``transport.write`` — no task, no ASGI message, no per-connection encoding.

Close codes follow docs/protocol.md: an undecodable frame closes with 1007, a frame
over ``max_frame_bytes`` with 1009, a missing or invalid hello with 4001 (and, from
the session, a token that expired without a ``refresh``), a phone whose unsent
data exceeds ``max_outbox_bytes`` with 4008, a node that shuts down with 1012.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from fieldpush.delivery.registry import Registry
from fieldpush.delivery.session import Session
from fieldpush.errors import AuthError
from fieldpush.events.frames import PING_FRAME, data_frame
from fieldpush.identity.access import close_code_for, error_code_of
from fieldpush.identity.auth import TokenVerifier
from fieldpush.metrics import Metrics
from fieldpush.settings import Settings
from fieldpush.trail.refusals import LoginRefusals, reason_of
from fieldpush.transport.handshake import HandshakeError, parse_upgrade, reject, switching_protocols
from fieldpush_client.protocol import (
    SUBPROTOCOL_JSON,
    CloseCode,
    DecodeError,
    Goaway,
    ServerMessage,
    codec_for,
)

__all__ = ["WS_PATH", "Connection", "Gateway"]

log = logging.getLogger("fieldpush.gateway")

#: The protocol's error code counted for an upgrade refused with an HTTP status
#: (``fieldpush_handshake_refusals_total``); any other status: ``bad_request``.
_UPGRADE_REFUSALS: Final = {403: "forbidden", 503: "unavailable"}
#: websockets logs every open and close at INFO; the session logs its own lines.
_WS_LOG: Final = logging.getLogger("fieldpush.gateway.websockets")
_WS_LOG.setLevel(logging.WARNING)

WS_PATH: Final = "/v1/ws"
#: How long a closing handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT_S: Final = 2.0


def _head_too_large(limit: int) -> HandshakeError:
    return HandshakeError(431, f"request head over {limit} bytes")


def _token_from_header(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the connections of a node share; built by the node, found by each
    :class:`Connection` in the app state (the lifespan yields it as ``"gateway"``)."""

    settings: Settings
    metrics: Metrics
    verifier: TokenVerifier
    registry: Registry[Connection]
    #: Makes the session of a connection whose upgrade succeeded.
    new_session: Callable[[Connection], Session]
    #: Counts tokens refused at the upgrade's ``Authorization`` header for the trail.
    login_refusals: LoginRefusals


class Connection(asyncio.Protocol):
    """A phone's socket. uvicorn instantiates it with its ``config``,
    ``server_state`` and ``app_state``; the :class:`Gateway` comes from the app
    state. uvicorn's ``server_state.connections`` holds every connection for
    uvicorn's own shutdown (which calls :meth:`shutdown`); fieldpush keeps
    upgraded ones in the gateway's registry."""

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None
    ) -> None:
        self.gateway: Gateway = app_state["gateway"]
        self.settings = self.gateway.settings
        self.server_state = server_state
        self.max_outbox_bytes = self.settings.max_outbox_bytes
        self.max_outbox_messages = self.settings.max_outbox_messages
        #: Frames written since the transport's buffer was last found empty.
        self.unsent_frames = 0
        #: Set while the transport's buffer is over its high-water mark.
        self.paused: asyncio.Future[None] | None = None
        #: The websockets protocol, created in OPEN state once the handshake succeeded.
        self.ws: ServerProtocol | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.source = ""
        self.subprotocol = "fieldpush.v1.json"
        self.binary = False
        self.header_token: str | None = None
        self.session: Session | None = None
        self.fragments: list[bytes | bytearray | memoryview] = []
        self.closing = False
        self.close_code: int | None = None
        self.last_rx = time.monotonic()
        self.pinged_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        #: The upgrade request's head while it is incomplete.
        self.head = b""

    # ------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
            self.source = str(peer[0])
        self.server_state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._cancel_timer()
        self.closing = True
        if self.session is not None:
            code = self.close_code
            if code is None and self.ws is not None and self.ws.close_rcvd is not None:
                code = self.ws.close_rcvd.code
            self.session.teardown(code)
            self.gateway.registry.remove_connection(self)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        ws = self.ws
        if ws is None:
            if not self.closing:
                try:
                    self._upgrade_data(data)
                except Exception:  # fail closed: the upgrade ends, its slot is released
                    log.exception("connection %s: upgrade failed", self.peer)
                    self._abort()
            return
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._send_pending()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.receive_eof()
            self._send_pending()
        return None

    def pause_writing(self) -> None:
        """The transport's buffer is over its high-water mark. Live events are
        still written (the outbox bounds in :meth:`write` decide when the phone
        is too slow); replays wait in :meth:`drained`."""
        if self.paused is None:
            self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        """See :meth:`pause_writing`."""
        paused, self.paused = self.paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    async def drained(self) -> None:
        """Return once the transport's buffer is under its high-water mark (at
        once when it is). A phone that reads nothing for ``heartbeat_s`` is
        closed with 4008 (and this returns)."""
        paused = self.paused
        if paused is None or self.closing:
            return
        try:
            await asyncio.wait_for(asyncio.shield(paused), self.settings.heartbeat_s)
        except TimeoutError:
            log.info("connection %s: too slow, read nothing during a replay", self.peer)
            self.close(CloseCode.TOO_SLOW, "too slow: events not read")

    # -------------------------------------------------------------- handshake

    def _upgrade_data(self, data: bytes) -> None:
        """Bytes before the upgrade: the request's head, whole (from uvicorn) or
        as it arrives (from the router); what follows the head is the client's
        first frames. The limits of the HTTP listener hold here too
        (docs/security.md): a head over ``max_header_bytes`` or with more than
        ``max_header_count`` fields is refused with 431, one not complete
        within ``header_timeout_s`` of its first bytes with 408."""
        settings = self.settings
        head = self.head + data if self.head else data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > settings.max_header_bytes:
                self._refuse_upgrade(_head_too_large(settings.max_header_bytes))
                return
            self.head = head
            if self.timer is None:  # a head in several reads (rare): bound its time
                loop = asyncio.get_running_loop()
                self.timer = loop.call_later(settings.header_timeout_s, self._head_timeout)
            return
        self.head = b""
        self._cancel_timer()
        if end > settings.max_header_bytes:
            self._refuse_upgrade(_head_too_large(settings.max_header_bytes))
            return
        if head.count(b"\r\n", 0, end) > settings.max_header_count:
            limit = settings.max_header_count
            self._refuse_upgrade(HandshakeError(431, f"more than {limit} header fields"))
            return
        self._handshake(head[: end + 4])
        rest = head[end + 4 :]
        if rest and self.ws is not None:
            self.data_received(rest)

    def _head_timeout(self) -> None:
        self.timer = None
        if self.ws is None and not self.closing:
            self._refuse_upgrade(HandshakeError(408, "request head not complete in time"))

    def _refuse_upgrade(self, error: HandshakeError) -> None:
        transport = self.transport
        assert transport is not None  # data comes after connection_made
        log.info("connection %s: upgrade refused (%d): %s", self.peer, error.status, error.text)
        self.gateway.metrics.handshake_refused(_UPGRADE_REFUSALS.get(error.status, "bad_request"))
        self.closing = True
        transport.write(reject(error))
        transport.close()

    def _handshake(self, request: bytes) -> None:
        gateway, settings = self.gateway, self.settings
        transport = self.transport
        assert transport is not None  # data comes after connection_made
        try:
            upgrade = parse_upgrade(request, path=WS_PATH, origins=settings.allowed_origins)
            limit = settings.max_connections
            if limit and gateway.registry.connection_count >= limit:
                raise HandshakeError(
                    503, "this node is full; retry on another", (("Retry-After", "5"),)
                )
        except HandshakeError as exc:
            self._refuse_upgrade(exc)
            return
        transport.write(switching_protocols(upgrade))
        self.ws = ServerProtocol(
            state=State.OPEN, max_size=settings.max_frame_bytes, logger=_WS_LOG
        )
        self.subprotocol = upgrade.subprotocol or SUBPROTOCOL_JSON
        self.binary = codec_for(self.subprotocol).binary
        self.header_token = _token_from_header(upgrade.authorization)
        self.session = gateway.new_session(self)
        gateway.registry.add_connection(self)
        gateway.metrics.connections_opened["websocket"] += 1
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(settings.hello_timeout_s, self._hello_timeout)
        if self.header_token is not None:
            try:
                gateway.verifier.verify(self.header_token)
            except AuthError as exc:
                log.info("connection %s refused: %s (Authorization header)", self.peer, exc)
                gateway.login_refusals.note(self.source, reason_of(exc))
                gateway.metrics.handshake_refused(error_code_of(exc))
                self.close(close_code_for(exc), str(exc))
            except Exception:  # fail closed: a verifier's bug refuses the token
                log.exception("connection %s refused: the token broke the verifier", self.peer)
                gateway.login_refusals.note(self.source, "invalid_token")
                gateway.metrics.handshake_refused("unauthorized")
                self.close(CloseCode.UNAUTHORIZED, "invalid token")

    def _hello_timeout(self) -> None:
        self.timer = None
        if self.session is not None and self.session.identity is None and not self.closing:
            log.info(
                "connection %s refused: no hello within %s s",
                self.peer,
                self.settings.hello_timeout_s,
            )
            self.gateway.metrics.handshake_refused("unauthorized")
            self.close(CloseCode.UNAUTHORIZED, "no hello in time")

    def hello_received(self) -> None:
        self._cancel_timer()

    # ----------------------------------------------------------------- frames

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._message(frame.data)
            else:
                self.fragments = [frame.data]
        elif opcode is Opcode.CONT:
            self.fragments.append(frame.data)
            if frame.fin:
                data, self.fragments = b"".join(self.fragments), []
                self._message(data)
        # PING is answered and CLOSE handled by the websockets protocol itself.

    def _message(self, data: bytes | bytearray | memoryview) -> None:
        session = self.session
        if session is None or self.closing:
            return
        try:
            message = codec_for(self.subprotocol).decode(bytes(data))
        except DecodeError as exc:
            log.info("connection %s: undecodable frame: %s", self.peer, exc)
            self.close(CloseCode.INVALID_DATA, "undecodable frame")
            return
        try:
            session.on_message(message)
        except Exception:  # a bug ends this connection (1011), never the node's others
            log.exception("connection %s: unexpected error handling a message", self.peer)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        """Write one or more complete frames (events, replies, errors). Closes
        with 4008 when the phone does not read its data: the unsent bytes exceed
        ``max_outbox_bytes``, or more than ``max_outbox_messages`` writes found
        data still unsent. Pongs the protocol writes count the same way."""
        transport = self.transport
        if transport is None or self.closing:
            return
        transport.write(data)
        unsent = transport.get_write_buffer_size()
        if unsent:
            self._bound_outbox(unsent)
        else:  # the common case: the phone reads, nothing more to do
            self.unsent_frames = 0

    def _bound_outbox(self, unsent: int) -> None:
        """After a write that left ``unsent`` bytes: close with 4008 when that is
        over the bounds (everything written counts: events, replies, errors, pongs)."""
        self.unsent_frames += 1
        if unsent > self.max_outbox_bytes or self.unsent_frames > self.max_outbox_messages:
            log.info(
                "connection %s: too slow, %d bytes in %d frames unsent",
                self.peer,
                unsent,
                self.unsent_frames,
            )
            self.close(CloseCode.TOO_SLOW, "too slow: events not read")

    def send_message(self, message: ServerMessage) -> None:
        """Encode one server message (a type of the protocol layer) and write it."""
        payload = codec_for(self.subprotocol).encode(message.to_wire())
        self.write(data_frame(payload, self.binary))

    def ping(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(PING_FRAME)

    def _send_pending(self) -> None:
        """Write what the websockets protocol produced (handshake response,
        pongs, close frames) and follow its state: once a close frame went out,
        no event frame may follow it."""
        transport = self.transport
        ws = self.ws
        if transport is None or ws is None:
            return
        if ws.close_sent is not None and not self.closing:
            # The protocol failed the connection itself (1007 bad UTF-8, 1009 too big)
            # or answered the client's close.
            self.closing = True
            self.close_code = ws.close_sent.code
            if ws.close_rcvd is None:
                self.gateway.metrics.closed[ws.close_sent.code] += 1
                log.info("connection %s closed: %s", self.peer, ws.close_sent)
        wrote = False
        for data in ws.data_to_send():
            if data:
                transport.write(data)
                wrote = True
            else:  # the protocol is done with the connection: half-close means close here
                self._cancel_timer()
                transport.close()
                return
        if wrote and not self.closing:  # pongs count against the outbox bounds too
            unsent = transport.get_write_buffer_size()
            if unsent:
                self._bound_outbox(unsent)
            else:
                self.unsent_frames = 0
        if ws.state is State.CLOSED and not transport.is_closing():
            transport.close()

    # ---------------------------------------------------------------- closing

    def close(self, code: CloseCode, reason: str) -> None:
        """Start the closing handshake; drop the connection if it does not finish."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.close_code = int(code)
        self.gateway.metrics.closed[int(code)] += 1
        if self.ws is not None and self.ws.state is State.OPEN:
            self.ws.send_close(int(code), reason[:120])
        self._send_pending()
        self._cancel_timer()
        if not self.transport.is_closing():
            self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._drop)

    def _abort(self) -> None:
        """Drop the TCP connection at once; :meth:`connection_lost` releases
        whatever the upgrade had taken (session, registry slot)."""
        self.closing = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _drop(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def shutdown(self) -> None:
        """Called by uvicorn when the node drains (SIGTERM): ask the phone to
        reconnect elsewhere at a random point of the ``goaway`` window, and
        close with 1012 at its end if it is still here."""
        if self.session is None or self.session.identity is None:
            self.close(CloseCode.SERVICE_RESTART, "node restarting")
            if self.transport is not None and self.ws is None:
                self.transport.close()  # still in the upgrade: nothing to say goodbye with
            return
        if self.closing:
            return
        settings = self.settings
        window = (settings.goaway_min_ms, settings.goaway_max_ms)
        self.send_message(Goaway(reason="drain", reconnect_after_ms=window))
        self._cancel_timer()
        self.timer = asyncio.get_running_loop().call_later(
            settings.goaway_max_ms / 1000 + 1.0,
            self.close,
            CloseCode.SERVICE_RESTART,
            "node restarting",
        )
