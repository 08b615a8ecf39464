"""The WebSocket opening handshake (RFC 6455 section 4.2), without I/O."""

from __future__ import annotations

import pytest

from fieldpush.transport.handshake import HandshakeError, parse_upgrade, reject, switching_protocols

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC's example


def request(target: str = "/v1/ws", method: str = "GET", **headers: str) -> bytes:
    fields = {
        "host": "x",
        "upgrade": "websocket",
        "connection": "keep-alive, Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items() if v)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_accept_key_and_subprotocol() -> None:
    upgrade = parse_upgrade(
        request(
            "/v1/ws?x=1",
            sec_websocket_protocol="chat, fieldpush.v1.msgpack, fieldpush.v1.json",
            authorization="Bearer t",
        ),
        path="/v1/ws",
        origins=(),
    )
    assert upgrade.subprotocol == "fieldpush.v1.msgpack"  # the client's first supported offer
    assert upgrade.authorization == "Bearer t"
    response = switching_protocols(upgrade)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"Sec-WebSocket-Protocol: fieldpush.v1.msgpack\r\n" in response
    assert response.endswith(b"\r\n\r\n")


def test_no_subprotocol_means_json_and_no_header() -> None:
    upgrade = parse_upgrade(request(), path="/v1/ws", origins=())
    assert upgrade.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in switching_protocols(upgrade)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request("/elsewhere"), 404),
        (request(method="POST"), 405),
        (request(connection="keep-alive"), 400),
        (request(upgrade="h2c"), 400),
        (request(sec_websocket_version="8"), 426),
        (request(sec_websocket_key=""), 400),
        (request(sec_websocket_key="c2hvcnQ="), 400),  # not 16 bytes
        (request(sec_websocket_key="not base64!"), 400),
        (request(sec_websocket_protocol="chat.v2"), 400),
    ],
)
def test_refusals(raw: bytes, status: int) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_upgrade(raw, path="/v1/ws", origins=())
    assert caught.value.status == status
    response = reject(caught.value)
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close\r\n" in response
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in response


CONSOLE = "https://console.example.com"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("", ()),  # no Origin: not a browser, accepted whatever the list
        ("", (CONSOLE,)),
        (CONSOLE, (CONSOLE,)),
    ],
)
def test_origins_accepted(origin: str, allowed: tuple[str, ...]) -> None:
    parse_upgrade(request(origin=origin), path="/v1/ws", origins=allowed)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://evil.example.net", ()),  # empty list: no browser page at all
        ("https://evil.example.net", (CONSOLE,)),
        ("http://console.example.com", (CONSOLE,)),  # another scheme is another origin
        ("https://console.example.com:8443", (CONSOLE,)),  # another port too
        ("null", (CONSOLE,)),  # sandboxed frames and file:// pages
    ],
)
def test_a_browser_page_of_another_origin_is_refused_with_403(
    origin: str, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_upgrade(request(origin=origin), path="/v1/ws", origins=allowed)
    assert caught.value.status == 403
    assert reject(caught.value).startswith(b"HTTP/1.1 403 Forbidden\r\n")


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://node.example.com:8080", "node.example.com:8080"),
        ("https://node.example.com", "node.example.com"),  # a TLS proxy in front
        ("http://node.example.com", "Node.Example.COM"),
    ],
)
def test_a_page_of_the_node_itself_needs_no_setting(origin: str, host: str) -> None:
    parse_upgrade(request(origin=origin, host=host), path="/v1/ws", origins=())


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://node.example.com:8081", "node.example.com:8080"),  # another port
        ("http://evil.example.net", "node.example.com"),
        ("ftp://node.example.com", "node.example.com"),
        ("node.example.com", "node.example.com"),  # no scheme
        ("http://", ""),
        ("null", "null"),
        ("http://a.example, http://b.example", "a.example, http://b.example"),
    ],
)
def test_only_the_same_host_counts_as_the_node_itself(origin: str, host: str) -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_upgrade(request(origin=origin, host=host), path="/v1/ws", origins=())
    assert caught.value.status == 403


def test_two_host_headers_are_not_the_node_itself() -> None:
    raw = request(origin="http://a.example").replace(
        b"\r\n\r\n", b"\r\nHost: a.example\r\nHost: a.example\r\n\r\n"
    )
    with pytest.raises(HandshakeError) as caught:
        parse_upgrade(raw, path="/v1/ws", origins=())
    assert caught.value.status == 403


def test_a_malformed_request_is_refused_for_its_form_before_its_origin() -> None:
    with pytest.raises(HandshakeError) as caught:
        parse_upgrade(
            request(origin="https://evil.example.net", sec_websocket_version="8"),
            path="/v1/ws",
            origins=(),
        )
    assert caught.value.status == 426
