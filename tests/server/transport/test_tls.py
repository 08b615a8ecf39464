"""TLS in-process: https:// and wss:// on one port, client certificates, and the
configuration errors (certificates from tests/support/tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from fieldpush.app import build_server
from fieldpush.errors import ConfigError
from fieldpush.settings import Settings
from fieldpush_client import DispatcherClient, EventMsg, PushClient, backoff_delays
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.timing import eventually, scaled
from tests.support.tls import TLSFiles, client_context


def tls_node(
    files: TLSFiles, **settings: Any
) -> contextlib.AbstractAsyncContextManager[RunningNode]:
    return running_node(node_settings(ssl_certfile=files.cert, ssl_keyfile=files.key, **settings))


def fast_backoff() -> Any:
    return backoff_delays(base_s=0.05, cap_s=0.2)


async def receive_one(node: RunningNode, ssl_option: Any, http_ssl: Any = None) -> EventMsg:
    """A PushClient on the node's wss:// URL gets an event published over https://."""
    token = node.token("alice", teams=("north",))
    async with (
        PushClient(
            node.ws_url, token=token, device="d1", subscriptions=["team:north"], ssl=ssl_option
        ) as client,
        DispatcherClient(
            node.url, node.token("disp", "dispatcher"), ssl=http_ssl or ssl_option
        ) as dispatcher,
    ):
        await client.wait_connected(scaled(5))
        assert client.transport == "websocket"
        events = client.events()
        sent = await dispatcher.publish(["team:north"], "note", {"n": 1})
        event = await asyncio.wait_for(anext(events), scaled(5))
        assert (event.id, event.data) == (sent.id, {"n": 1})
        return event


async def test_https_and_wss_on_one_port_with_the_ca_file(tls_files: TLSFiles) -> None:
    async with tls_node(tls_files) as node:
        assert node.url.startswith("https://127.0.0.1:")
        assert node.ws_url.startswith("wss://127.0.0.1:")
        await receive_one(node, tls_files.ca)  # the SDK takes a CA file ...
        await receive_one(node, client_context(tls_files))  # ... or an SSLContext
        async with httpx.AsyncClient(verify=client_context(tls_files)) as http:
            reply = await http.get(node.url + "/healthz")
            assert reply.status_code == 200


async def test_a_client_without_the_ca_is_refused(
    tls_files: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    async with tls_node(tls_files) as node:
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(node.url + "/healthz")
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            async with connect(node.ws_url):
                pass
        caplog.set_level(logging.INFO, "fieldpush.client")
        token = node.token("alice")
        async with PushClient(
            node.ws_url, token=token, device="d1", backoff=fast_backoff, fallback_after_failures=0
        ) as client:
            await eventually(
                lambda: "certificate verify failed" in caplog.text,
                message="the SDK logs the failed verification",
            )
            assert not client.connected


async def test_plain_http_to_the_tls_port_fails_cleanly_and_the_node_keeps_serving(
    tls_files: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    async with tls_node(tls_files) as node:
        plain = node.url.replace("https://", "http://", 1)
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.TransportError):
                await http.get(plain + "/healthz")
        # A plain WebSocket upgrade gets no HTTP answer: the connection just ends.
        host, port = node.url.removeprefix("https://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), scaled(5))
        assert not answer.startswith(b"HTTP/")
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await receive_one(node, tls_files.ca)  # still serving
        assert "Traceback" not in caplog.text


@contextlib.asynccontextmanager
async def mtls_node(files: TLSFiles, mode: str) -> AsyncIterator[RunningNode]:
    async with tls_node(files, ssl_ca_certs=files.client_ca, ssl_client_cert=mode) as node:
        yield node


async def test_a_required_client_certificate(tls_files: TLSFiles) -> None:
    with_cert = client_context(tls_files, with_client_cert=True)
    async with mtls_node(tls_files, "required") as node:
        async with httpx.AsyncClient(verify=client_context(tls_files)) as http:
            with pytest.raises(httpx.TransportError):
                await http.get(node.url + "/healthz")
        with pytest.raises((OSError, InvalidHandshake)):  # TLS 1.3: the alert comes late
            async with connect(node.ws_url, ssl=client_context(tls_files)):
                pass
        # A certificate of another CA (the server's own, signed by the server CA).
        other = client_context(tls_files)
        other.load_cert_chain(tls_files.cert, tls_files.key)
        async with httpx.AsyncClient(verify=other) as http:
            with pytest.raises(httpx.TransportError):
                await http.get(node.url + "/healthz")
        # Signed by the client CA: accepted, on both the socket and HTTP.
        await receive_one(node, with_cert)


async def test_an_optional_client_certificate(tls_files: TLSFiles) -> None:
    async with mtls_node(tls_files, "optional") as node:
        await receive_one(node, tls_files.ca)
        await receive_one(node, client_context(tls_files, with_client_cert=True))
        other = client_context(tls_files)  # a certificate sent must still verify
        other.load_cert_chain(tls_files.cert, tls_files.key)
        async with httpx.AsyncClient(verify=other) as http:
            with pytest.raises(httpx.TransportError):
                await http.get(node.url + "/healthz")


async def test_the_sdk_reads_a_ca_file_at_once_and_takes_one_tls_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PushClient("wss://h/v1/ws", token="t", device="d", ssl=tmp_path / "missing.pem")
    with pytest.raises(FileNotFoundError):
        DispatcherClient("https://h", "t", ssl=str(tmp_path / "missing.pem"))
    async with httpx.AsyncClient() as own:
        with pytest.raises(ValueError, match="not both"):
            DispatcherClient("https://h", "t", http=own, ssl=ssl.create_default_context())


# ------------------------------------------------------------------ configuration


def settings_with(files: TLSFiles, **tls: Any) -> Settings:
    values = {"ssl_certfile": files.cert, "ssl_keyfile": files.key, **tls}
    return node_settings(**values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ssl_certfile": "server.pem"}, "ssl_certfile and ssl_keyfile go together"),
        ({"ssl_keyfile": "server.key"}, "ssl_certfile and ssl_keyfile go together"),
        ({"ssl_ca_certs": "ca.pem"}, "ssl_ca_certs checks client certificates, which needs TLS"),
        ({"allowed_origins": ("https://console.example.com/",)}, "is not an origin"),
        ({"allowed_origins": ("HTTPS://Console.example.com",)}, "in lower case"),
        ({"allowed_origins": ("console.example.com",)}, "scheme://host[:port]"),
    ],
)
def test_settings_that_do_not_go_together(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        node_settings(**values).check()


def test_allowed_origins_in_their_browser_form() -> None:
    origins = ("https://console.example.com", "http://localhost:3000", "https://[::1]:8443")
    node_settings(allowed_origins=origins).check()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ssl_certfile": "missing.pem"}, "cannot read ssl_certfile .*missing.pem: No such file"),
        ({"ssl_keyfile": "missing.key"}, "cannot read ssl_keyfile .*missing.key"),
        ({"ssl_certfile": "NOT_PEM"}, "ssl_certfile .* holds no PEM certificate"),
        ({"ssl_keyfile": "NOT_PEM"}, "ssl_keyfile .* holds no PEM private key"),
        ({"ssl_keyfile": "OTHER_KEY"}, "is not the private key of the certificate"),
        ({"ssl_keyfile": "ENCRYPTED_KEY"}, "is encrypted; fieldpush needs an unencrypted key"),
        ({"ssl_ca_certs": "missing-ca.pem"}, "cannot read ssl_ca_certs"),
        ({"ssl_ca_certs": "NOT_PEM"}, "ssl_ca_certs .* holds no PEM certificate"),
        ({"ssl_client_cert": "sometimes", "ssl_ca_certs": "CA"}, "'required' or 'optional'"),
    ],
)
def test_unusable_tls_files_stop_the_node_before_it_listens(
    tls_files: TLSFiles, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    named = {
        "NOT_PEM": tls_files.not_pem,
        "OTHER_KEY": tls_files.other_key,
        "ENCRYPTED_KEY": tls_files.encrypted_key,
        "CA": tls_files.client_ca,
    }
    values = {name: named.get(value, str(tmp_path / value)) for name, value in change.items()}
    if "ssl_client_cert" in change:
        values["ssl_client_cert"] = change["ssl_client_cert"]
    with pytest.raises(ConfigError, match=message):
        settings = settings_with(tls_files, **values)
        settings.check()
        build_server(settings)
