"""``fieldpush serve`` with TLS, as an operator runs it: a real subprocess with the
throwaway certificates of tests/support/tls.py."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest

from fieldpush_client import DispatcherClient, PushClient
from tests.support.cli import ServeProcess, run
from tests.support.cluster import token
from tests.support.timing import scaled
from tests.support.tls import TLSFiles, client_context


async def published_event_arrives(server: ServeProcess, tls: ssl.SSLContext | str) -> None:
    """The SDK over wss:// receives an event the dispatcher client published over https://."""
    async with (
        PushClient(
            server.ws_url,
            token=token("alice", teams=("north",)),
            device="d1",
            subscriptions=["team:north"],
            ssl=tls,
        ) as client,
        DispatcherClient(server.url, token("disp", "dispatcher"), ssl=tls) as dispatcher,
    ):
        await client.wait_connected(scaled(10))
        events = client.events()
        sent = await dispatcher.publish(["team:north"], "note", {"n": 1})
        event = await asyncio.wait_for(anext(events), scaled(10))
        assert event.id == sent.id and event.data == {"n": 1}


async def test_serve_https_and_wss_on_one_port(tls_files: TLSFiles) -> None:
    server = ServeProcess(
        "--port", "0", "--ssl-certfile", tls_files.cert, "--ssl-keyfile", tls_files.key,
        env={"FIELDPUSH_ACCESS_LOG": "false"},
    ).start()  # fmt: skip
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert f"(WebSocket {server.ws_url})" in server.output
        assert server.ws_url.startswith("wss://127.0.0.1:")
        await published_event_arrives(server, tls_files.ca)
        # Without the CA the certificate does not verify.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(server.url + "/healthz")
        # Plain HTTP on the TLS port: the request fails, the node goes on.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.TransportError):
                await http.get(server.url.replace("https://", "http://", 1) + "/healthz")
        async with httpx.AsyncClient(verify=client_context(tls_files)) as http:
            assert (await http.get(server.url + "/healthz")).status_code == 200
        # The command's own HTTP client takes the CA from SSL_CERT_FILE.
        published = run(
            "publish", "--url", server.url, "--channel", "team:north", "--kind", "note",
            env={"SSL_CERT_FILE": tls_files.ca},
        )  # fmt: skip
        assert published.returncode == 0, published.stdout + published.stderr
        assert set(json.loads(published.stdout)["offsets"]) == {"team:north"}
        await published_event_arrives(server, client_context(tls_files))
    finally:
        assert server.stop() == 0, server.output
    assert "Traceback" not in server.output, server.output


async def test_serve_requires_client_certificates_from_the_environment(
    tls_files: TLSFiles,
) -> None:
    env = {
        "FIELDPUSH_SSL_CERTFILE": tls_files.cert,
        "FIELDPUSH_SSL_KEYFILE": tls_files.key,
        "FIELDPUSH_SSL_CA_CERTS": tls_files.client_ca,
        "FIELDPUSH_ACCESS_LOG": "false",
    }
    server = ServeProcess("--port", "0", env=env).start()
    try:
        async with httpx.AsyncClient(verify=client_context(tls_files)) as http:
            with pytest.raises(httpx.TransportError):  # no client certificate
                await http.get(server.url + "/healthz")
        await published_event_arrives(server, client_context(tls_files, with_client_cert=True))
    finally:
        assert server.stop() == 0, server.output
    assert "Traceback" not in server.output, server.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ssl-certfile", "CERT"], "ssl_certfile and ssl_keyfile go together"),
        (["--ssl-certfile", "CERT", "--ssl-keyfile", "OTHER"], "is not the private key"),
        (["--ssl-certfile", "CERT", "--ssl-keyfile", "/nonexistent.key"], "cannot read"),
    ],
)
def test_serve_explains_unusable_tls_settings(
    tls_files: TLSFiles, flags: list[str], message: str
) -> None:
    named = {"CERT": tls_files.cert, "OTHER": tls_files.other_key}
    result = run("serve", "--port", "0", *(named.get(flag, flag) for flag in flags))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "fieldpush serve: configuration error: " in result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
