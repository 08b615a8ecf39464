"""Hostile and wrong SCIM requests: each gets the RFC 7644 §3.12 error it
deserves, and nothing stored changes (the directory's entries are the same,
no account call is made). On both backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fieldpush.settings import Secret
from tests.server.http.scim_support import (
    BASE,
    EXTENSION,
    TOKEN,
    RecordingAccounts,
    assert_scim_error,
    auth,
    patch_body,
    record_accounts,
    stored,
    user_body,
)
from tests.support.node import NodeFactory, RunningNode


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node(scim_token=Secret(TOKEN)) as running:
        yield running


@pytest.fixture
async def alice(node: RunningNode, http: httpx.AsyncClient) -> AsyncIterator[str]:
    """The location of user alice, created before the test; the test's
    requests must leave the directory as it was and make no account call."""
    accounts = record_accounts(node)
    reply = await http.post(f"{BASE}/Users", json=user_body("alice"), headers=auth())
    assert reply.status_code == 201
    before = await stored(node)
    accounts.calls.clear()
    yield reply.headers["location"]
    assert await stored(node) == before
    assert accounts.calls == []


def raw(body: bytes | str) -> dict[str, Any]:
    return {"content": body, "headers": {**auth(), "Content-Type": "application/scim+json"}}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-secret-of-the-same-length-abcdefgh"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "not-bearer", "empty", "longer"],
)
async def test_wrong_bearer_is_401(
    http: httpx.AsyncClient, alice: str, headers: dict[str, str]
) -> None:
    for request in (
        http.build_request("GET", f"{BASE}/Users", headers=headers),
        http.build_request("POST", f"{BASE}/Users", json=user_body("bob"), headers=headers),
        http.build_request("DELETE", alice, headers=headers),
        http.build_request("GET", f"{BASE}/Schemas", headers=headers),
        http.build_request("GET", f"{BASE}/Nope", headers=headers),
    ):
        reply = await http.send(request)
        assert_scim_error(reply, 401, None)
        assert reply.headers["www-authenticate"] == "Bearer"


async def test_two_authorization_headers_are_401(http: httpx.AsyncClient, alice: str) -> None:
    headers = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {TOKEN}")]
    reply = await http.delete(alice, headers=headers)
    body = assert_scim_error(reply, 401, None)
    assert "more than one" in body["detail"]


async def test_scim_off_without_a_token(start_node: NodeFactory) -> None:
    async with start_node() as node, httpx.AsyncClient(base_url=node.url) as http:
        for path in ("/Users", "/ServiceProviderConfig", "/Users/x", ""):
            reply = await http.get(BASE + path, headers=auth())
            body = assert_scim_error(reply, 404, None)
            assert body["detail"] == "SCIM provisioning is not enabled; set scim_token"
        assert (await http.post(f"{BASE}/Users", json=user_body())).status_code == 404
        assert await stored(node) == []


BAD_BODIES: dict[str, tuple[bytes | str, int, str | None]] = {
    "not-json": (b"{userName: alice", 400, "invalidSyntax"),
    "not-utf8": (b'{"userName": "\xff"}', 400, "invalidSyntax"),
    "too-deep": (b"[" * 60_000, 400, "invalidSyntax"),
    "nan": (
        '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": NaN}',
        400,
        "invalidSyntax",
    ),
    "float-out-of-range": (
        json.dumps(user_body("bob"))[:-1] + ', "x": 1e400}',
        400,
        "invalidSyntax",
    ),
    "huge-int-digits": ('{"userName": ' + "9" * 5000 + "}", 400, "invalidSyntax"),
    "array": (b"[]", 400, "invalidSyntax"),
    "too-large": (json.dumps(user_body("bob", displayName="x" * 70_000)), 413, None),
    "int-as-active": (json.dumps(user_body("bob", active=10**30)), 400, "invalidValue"),
    "int-as-username": (json.dumps(user_body(10**30)), 400, "invalidValue"),
    "control-character": (json.dumps(user_body("bo\x07b")), 400, "invalidValue"),
    "newline": (json.dumps(user_body("bob\n2099-01-01 CRITICAL")), 400, "invalidValue"),
    "space": (json.dumps(user_body("bob smith")), 400, "invalidValue"),
    "empty-username": (json.dumps(user_body("")), 400, "invalidValue"),
    "no-username": (json.dumps({"schemas": [user_body()["schemas"][0]]}), 400, "invalidValue"),
    "long-username": (json.dumps(user_body("b" * 196)), 400, "invalidValue"),
    "unknown-schema": (
        json.dumps({**user_body("bob"), "schemas": ["urn:x:Evil"]}),
        400,
        "invalidSyntax",
    ),
    "unknown-attribute": (json.dumps(user_body("bob", isAdmin=True)), 400, "invalidSyntax"),
    "unknown-role": (json.dumps(user_body("bob", roles=[{"value": "root"}])), 400, "invalidValue"),
    "bad-team": (
        json.dumps(
            {
                **user_body("bob"),
                "schemas": [user_body()["schemas"][0], EXTENSION],
                EXTENSION: {"teams": ["a b"]},
            }
        ),
        400,
        "invalidValue",
    ),
    "duplicate-username": (json.dumps(user_body("ALICE")), 409, "uniqueness"),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
async def test_bad_creation_bodies(http: httpx.AsyncClient, alice: str, case: str) -> None:
    body, status, scim_type = BAD_BODIES[case]
    assert_scim_error(await http.post(f"{BASE}/Users", **raw(body)), status, scim_type)


@pytest.mark.parametrize("case", ["not-json", "too-deep", "nan", "too-large", "control-character"])
async def test_bad_replacement_bodies(http: httpx.AsyncClient, alice: str, case: str) -> None:
    body, status, scim_type = BAD_BODIES[case]
    assert_scim_error(await http.put(alice, **raw(body)), status, scim_type)


async def test_wrong_content_type_is_415(http: httpx.AsyncClient, alice: str) -> None:
    reply = await http.post(
        f"{BASE}/Users",
        content=json.dumps(user_body("bob")),
        headers={**auth(), "Content-Type": "text/plain"},
    )
    assert_scim_error(reply, 415, None)


async def test_username_is_immutable(http: httpx.AsyncClient, alice: str) -> None:
    body = assert_scim_error(
        await http.put(alice, json=user_body("mallory"), headers=auth()), 400, "mutability"
    )
    assert "token subject" in body["detail"]
    reply = await http.patch(
        alice,
        json=patch_body({"op": "replace", "path": "userName", "value": "mallory"}),
        headers=auth(),
    )
    assert_scim_error(reply, 400, "mutability")
    reply = await http.patch(
        alice, json=patch_body({"op": "Replace", "value": {"userName": "Alice"}}), headers=auth()
    )
    assert_scim_error(reply, 400, "mutability")


BAD_PATCHES: dict[str, tuple[Any, str]] = {
    "unknown-op": (
        patch_body({"op": "frobnicate", "path": "active", "value": False}),
        "invalidValue",
    ),
    "unknown-path": (
        patch_body({"op": "replace", "path": "isAdmin", "value": True}),
        "invalidPath",
    ),
    "bad-path-syntax": (
        patch_body({"op": "replace", "path": "active[[", "value": True}),
        "invalidPath",
    ),
    "no-operations": (patch_body(), "invalidValue"),
    "not-patchop": ({"schemas": ["urn:x"], "Operations": []}, "invalidSyntax"),
    "active-not-bool": (
        patch_body({"op": "replace", "path": "active", "value": "maybe"}),
        "invalidValue",
    ),
    "active-huge-int": (
        patch_body({"op": "replace", "path": "active", "value": 10**30}),
        "invalidValue",
    ),
    "bad-role": (
        patch_body({"op": "add", "path": "roles", "value": [{"value": "root"}]}),
        "invalidValue",
    ),
    "bad-team": (
        patch_body({"op": "add", "path": f"{EXTENSION}:teams", "value": ["a\x00"]}),
        "invalidValue",
    ),
    "operations-not-a-list": ({**patch_body(), "Operations": "replace"}, "invalidValue"),
}


@pytest.mark.parametrize("case", BAD_PATCHES, ids=list(BAD_PATCHES))
async def test_bad_patches(http: httpx.AsyncClient, alice: str, case: str) -> None:
    body, scim_type = BAD_PATCHES[case]
    reply = await http.patch(alice, json=body, headers=auth())
    assert_scim_error(reply, 400, scim_type)


@pytest.mark.parametrize(
    ("query", "scim_type"),
    [
        ({"filter": "userName eq"}, "invalidFilter"),
        ({"filter": 'userName eq "a" and'}, "invalidFilter"),
        ({"filter": "((((((((((("}, "invalidFilter"),
        ({"filter": "not (" * 40 + 'userName eq "a"' + ")" * 40}, "invalidFilter"),
        ({"filter": 'isAdmin eq "x"'}, "invalidFilter"),
        ({"filter": "active gt 10"}, "invalidFilter"),
        ({"filter": 'userName eq "' + "a" * 10_000}, "invalidFilter"),
        ({"startIndex": "one"}, "invalidValue"),
        ({"count": "1.5"}, "invalidValue"),
        ({"count": "9" * 5000}, "invalidValue"),
    ],
)
async def test_bad_queries(
    http: httpx.AsyncClient, alice: str, query: dict[str, str], scim_type: str
) -> None:
    reply = await http.get(f"{BASE}/Users", params=query, headers=auth())
    assert_scim_error(reply, 400, scim_type)


async def test_unknown_ids_are_404(http: httpx.AsyncClient, alice: str) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        body = (
            user_body("alice")
            if method == "PUT"
            else patch_body({"op": "replace", "path": "active", "value": False})
        )
        request = http.build_request(
            method,
            f"{BASE}/Users/nope",
            json=None if method in ("GET", "DELETE") else body,
            headers=auth(),
        )
        assert_scim_error(await http.send(request), 404, None)


async def test_accounts_unavailable_is_503(node: RunningNode, http: httpx.AsyncClient) -> None:
    """The resource is written first; an account service that cannot answer
    makes it a 503, and the identity provider's retry applies it."""
    accounts: RecordingAccounts = record_accounts(node)
    accounts.failing = True
    reply = await http.post(f"{BASE}/Users", json=user_body("frank"), headers=auth())
    assert_scim_error(reply, 503, None)
    (entry,) = await stored(node)
    accounts.failing = False
    reply = await http.patch(
        f"{BASE}/Users/{entry.id}",
        json=patch_body({"op": "replace", "path": "active", "value": False}),
        headers=auth(),
    )
    assert reply.status_code == 200
    assert accounts.calls == [
        ("set_active", "frank", False, "scim"),
        ("assign", "frank", None, None, "scim"),
    ]


async def test_an_unexpected_error_is_a_scim_500_without_details(
    node: RunningNode, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(entry_id: str) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(node.node.backend.directory, "get", broken)
    reply = await http.get(f"{BASE}/Users/x", headers=auth())
    assert_scim_error(reply, 500, None)
    assert "secret detail" not in reply.text
