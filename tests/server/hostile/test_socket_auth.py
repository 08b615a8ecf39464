"""Hostile tokens on a real socket (issue 11, defect 1): a token that breaks
the verifier, or any other exception in the upgrade or hello, is a refusal
(4001 or an aborted upgrade) and its connection slot is released."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fieldpush.delivery.registry import Registry
from fieldpush.identity.auth import Identity
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.phones import Phone, phone
from tests.support.timing import eventually


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


#: A header whose ``kid`` is an object: no valid signature needed to reach the key lookup.
KID_OBJECT = f"{_segment({'alg': 'RS256', 'kid': {}})}.{_segment({'sub': 'x'})}.AAAA"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "crm.pem").write_bytes(pem)
    settings = node_settings(
        max_connections=5,
        hello_timeout_s=30,
        jwt_algorithms=("HS256", "RS256"),
        jwt_public_keys={"crm-1": str(tmp_path / "crm.pem")},
    )
    async with running_node(settings) as running:
        yield running


async def _refused(node: RunningNode, *, header: str | None, hello: str | None) -> int | None:
    headers = {"Authorization": f"Bearer {header}"} if header else None
    async with connect(
        node.ws_url,
        additional_headers=headers,
        subprotocols=["fieldpush.v1.json"],  # type: ignore[list-item]
    ) as ws:
        if hello is not None:
            with contextlib.suppress(ConnectionClosed):  # the header token may be refused first
                await ws.send(json.dumps({"type": "hello", "token": hello, "device": "d"}))
        return await Phone(ws, False).closed_with()


async def test_hostile_kid_is_refused_and_frees_its_slot(node: RunningNode) -> None:
    """Eight upgrades with ``{"alg":"RS256","kid":{}}`` on a node of five slots:
    each closes with 4001, the node stays open for the next phone."""
    async with phone(node, "bystander") as bystander:
        for n in range(8):
            use_header = n % 2 == 0
            code = await _refused(node, header=KID_OBJECT if use_header else None, hello=KID_OBJECT)
            assert code == 4001, n
        await eventually(
            lambda: node.node.registry.connection_count == 1, message="only the bystander is left"
        )
        async with phone(node, "alice") as alice:
            assert alice.welcome["user"] == "alice"
        assert (await bystander.request({"type": "ping", "id": 1}))["type"] == "pong"


async def test_any_exception_in_the_auth_path_is_a_refusal(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: a verifier that raises something unexpected refuses the
    phone with 4001 (token in the header or in hello) and frees the slot."""

    def broken(token: str | None) -> Identity:
        raise RuntimeError("a bug in the verifier")

    monkeypatch.setattr(node.node.verifier, "verify", broken)
    for n in range(8):
        code = await _refused(node, header="t" if n % 2 == 0 else None, hello="t")
        assert code == 4001, n
    await eventually(lambda: node.node.registry.connection_count == 0, message="every slot is free")
    monkeypatch.undo()
    async with phone(node, "alice") as alice:
        assert alice.welcome["user"] == "alice"


async def test_two_authorization_headers_refuse_the_upgrade_401(node: RunningNode) -> None:
    """Issue 11, defect 8: the upgrade follows the HTTP rule, whichever comes first."""
    good = f"Bearer {node.token('alice')}"
    for pair in ((good, "Bearer x"), ("Bearer x", good)):
        headers = [("Authorization", value) for value in pair]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(node.ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401
        assert b"more than one Authorization header" in refused.value.response.body
    assert node.node.registry.connection_count == 0


async def test_an_exception_after_the_slot_is_taken_releases_it(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed inside the upgrade itself: a bug after the connection took
    its slot drops that connection and frees the slot at once."""
    original = Registry.add_connection

    def add_then_fail(registry: Registry[Any], connection: Any) -> None:
        original(registry, connection)
        raise RuntimeError("a bug after the slot was taken")

    monkeypatch.setattr(Registry, "add_connection", add_then_fail)
    for _ in range(8):
        with contextlib.suppress(ConnectionClosed, OSError):
            async with connect(node.ws_url) as ws:
                await ws.recv()
    await eventually(lambda: node.node.registry.connection_count == 0, message="every slot is free")
    monkeypatch.undo()
    async with phone(node, "alice") as alice:
        assert alice.welcome["user"] == "alice"
