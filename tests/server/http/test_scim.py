"""SCIM provisioning (fieldpush.http.scim) against a node on a real socket, on
both backends, driven by third-party SCIM software: scim2-client for the
lifecycle an identity provider goes through, scim2-tester for RFC compliance.
The account side (``node.accounts``) is recorded by tests.server.http.scim_support."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from scim2_client.engines.httpx2 import AsyncSCIMClient, SyncSCIMClient
from scim2_models import NotFoundException, PatchOp, PatchOperation, SearchRequest
from scim2_tester import Status, check_server

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
def accounts(node: RunningNode) -> RecordingAccounts:
    return record_accounts(node)


@pytest.fixture
async def scim(node: RunningNode) -> AsyncIterator[AsyncSCIMClient]:
    """scim2-client on the node, after discovery (its models are the server's)."""
    async with httpx2.AsyncClient(base_url=node.url + BASE, headers=auth()) as http:
        client = AsyncSCIMClient(http)
        await client.discover()
        yield client


def extension_model(client: AsyncSCIMClient | SyncSCIMClient) -> Any:
    assert client.provider is not None
    (model,) = [m for m in client.provider.models if str(m.__schema__) == EXTENSION]
    return model


DISABLE = ("set_active", "alice", False, "scim")
ENABLE = ("set_active", "alice", True, "scim")
ASSIGN = ("assign", "alice", "supervisor", ("north", "south"), "scim")


async def test_lifecycle_through_scim2_client(
    node: RunningNode, http: httpx.AsyncClient, scim: AsyncSCIMClient, accounts: RecordingAccounts
) -> None:
    user_model: Any = scim.get_resource_model("User")
    teams = extension_model(scim)
    user = user_model(
        user_name="alice",
        active=True,
        roles=[{"value": "dispatcher"}, {"value": "supervisor", "primary": True}],
    )
    user[teams] = teams(teams=["north", "south"])
    created = await scim.create(user)
    assert created.id and created.user_name == "alice" and created.active is True
    assert created.meta.version == 'W/"1"'
    assert created.meta.location == f"{node.url}{BASE}/Users/{created.id}"
    assert created[teams].teams == ["north", "south"]
    assert accounts.calls == [ASSIGN, ENABLE]

    # Read back: by id, and by the filter that Entra and Okta send (case-insensitive).
    assert (await scim.query(user_model, created.id)).user_name == "alice"
    await scim.create(user_model(user_name="bob"))
    found = await scim.query(
        user_model, query_parameters=SearchRequest(filter='userName eq "ALICE"')
    )
    assert found.total_results == 1 and [r.id for r in found.resources] == [created.id]
    everyone = await scim.query(user_model)
    assert everyone.total_results == 2
    assert {r.user_name for r in everyone.resources} == {"alice", "bob"}

    # PUT: a replacement that disables the user (the disable before the
    # assignment: the socket closes with 4003, not first with 1012).
    accounts.calls.clear()
    created.active = False
    replaced = await scim.replace(created)
    assert replaced.active is False and replaced.meta.version == 'W/"2"'
    assert accounts.calls[-2:] == [DISABLE, ASSIGN]

    # PATCH, the RFC form: replace of the path active.
    operation: Any = PatchOperation[user_model](op="replace", path="active", value=True)
    patched = await scim.modify(user_model, created.id, PatchOp[user_model](operations=[operation]))
    assert patched is not None and patched.active is True
    assert accounts.calls[-2:] == [ASSIGN, ENABLE]

    # PATCH, the Entra form: "Replace", no path, the value an object; "False" a string.
    reply = await http.patch(
        f"{BASE}/Users/{created.id}",
        json=patch_body({"op": "Replace", "value": {"active": "False"}}),
        headers=auth(),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["active"] is False and reply.headers["etag"] == 'W/"4"'
    assert accounts.calls[-2:] == [DISABLE, ASSIGN]
    reply = await http.patch(
        f"{BASE}/Users/{created.id}",
        json=patch_body({"op": "Replace", "path": "active", "value": "True"}),
        headers=auth(),
    )
    assert reply.json()["active"] is True
    assert accounts.calls[-2:] == [ASSIGN, ENABLE]

    # DELETE: gone from SCIM, and the account disabled.
    await scim.delete(user_model, created.id)
    assert accounts.calls[-1] == ("set_active", "alice", False, "scim")
    with pytest.raises(NotFoundException):
        await scim.query(user_model, created.id)
    assert [e.user_name for e in await stored(node)] == ["bob"]


async def test_role_and_teams_may_come_from_the_token(
    http: httpx.AsyncClient, accounts: RecordingAccounts
) -> None:
    """No roles and no extension: assign(None, None), the token's claims decide;
    teams [] means no team; without ``active``, the user is active."""
    reply = await http.post(f"{BASE}/Users", json=user_body("carol"), headers=auth())
    assert reply.status_code == 201, reply.text
    assert reply.headers["location"].endswith(f"/Users/{reply.json()['id']}")
    body = {"schemas": [user_body()["schemas"][0], EXTENSION], "userName": "dave"}
    body[EXTENSION] = {"teams": []}
    reply = await http.post(
        f"{BASE}/Users",
        json=body,
        headers={**auth(), "Content-Type": "application/scim+json"},
    )
    assert reply.status_code == 201, reply.text
    assert accounts.calls == [
        ("assign", "carol", None, None, "scim"),
        ("set_active", "carol", True, "scim"),
        ("assign", "dave", None, (), "scim"),
        ("set_active", "dave", True, "scim"),
    ]


async def test_pages_and_filters_evaluated_by_the_library(
    node: RunningNode, http: httpx.AsyncClient, accounts: RecordingAccounts
) -> None:
    for i in range(5):
        reply = await http.post(
            f"{BASE}/Users", json=user_body(f"u{i}", active=i % 2 == 0), headers=auth()
        )
        assert reply.status_code == 201
    ids = sorted(e.id for e in await stored(node))

    async def listing(**query: Any) -> dict[str, Any]:
        reply = await http.get(f"{BASE}/Users", params=query, headers=auth())
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/scim+json"
        body: dict[str, Any] = reply.json()
        return body

    page = await listing(startIndex=2, count=2)
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 2, 2)
    assert [r["id"] for r in page["Resources"]] == ids[1:3]
    # RFC 7644 §3.4.2.4: startIndex < 1 is 1, a negative count is 0; count is clamped.
    assert [r["id"] for r in (await listing(startIndex=0, count=1))["Resources"]] == ids[:1]
    assert (await listing(count=-3))["Resources"] == []
    assert len((await listing(count=10**30))["Resources"]) == 5
    assert (await listing(startIndex=10**30))["Resources"] == []
    inactive = await listing(filter="active eq false")
    assert sorted(r["userName"] for r in inactive["Resources"]) == ["u1", "u3"]
    either = await listing(filter='userName sw "u" and not (userName eq "u0")', count=2)
    assert either["totalResults"] == 4 and either["itemsPerPage"] == 2
    assert (await listing(filter='userName eq "nobody"'))["totalResults"] == 0
    only = await listing(filter='userName eq "u1"', attributes="userName")
    assert set(only["Resources"][0]) == {"schemas", "id", "userName"}


async def test_etags_and_if_match(node: RunningNode, http: httpx.AsyncClient) -> None:
    record_accounts(node)
    reply = await http.post(f"{BASE}/Users", json=user_body("erin"), headers=auth())
    location, tag = reply.headers["location"], reply.headers["etag"]
    assert tag == 'W/"1"'
    reply = await http.put(location, json=user_body("erin"), headers={**auth(), "If-Match": tag})
    assert reply.status_code == 200 and reply.headers["etag"] == 'W/"2"'
    before = await stored(node)
    reply = await http.put(
        location, json=user_body("erin", active=False), headers={**auth(), "If-Match": tag}
    )
    assert_scim_error(reply, 412, None)
    reply = await http.delete(location, headers={**auth(), "If-Match": 'W/"nope"'})
    assert_scim_error(reply, 412, None)
    assert await stored(node) == before
    reply = await http.delete(location, headers={**auth(), "If-Match": 'W/"2"'})
    assert reply.status_code == 204 and reply.content == b""


async def test_discovery(node: RunningNode, http: httpx.AsyncClient) -> None:
    reply = await http.get(f"{BASE}/ServiceProviderConfig", headers=auth())
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/scim+json"
    config = reply.json()
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["etag"] == {"supported": True}
    assert config["bulk"]["supported"] is False
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    kinds = (await http.get(f"{BASE}/ResourceTypes", headers=auth())).json()
    assert kinds["totalResults"] == 1
    (user_type,) = kinds["Resources"]
    assert user_type["endpoint"] == "/Users"
    assert user_type["schemaExtensions"] == [{"schema": EXTENSION, "required": False}]
    assert (await http.get(f"{BASE}/ResourceTypes/User", headers=auth())).json() == user_type
    schemas = (await http.get(f"{BASE}/Schemas", headers=auth())).json()["Resources"]
    extension = {s["id"]: s for s in schemas}[EXTENSION]
    assert [a["name"] for a in extension["attributes"]] == ["teams"]
    one = await http.get(f"{BASE}/Schemas/{EXTENSION}", headers=auth())
    assert one.json() == extension
    assert_scim_error(await http.get(f"{BASE}/Schemas/urn:nope", headers=auth()), 404, None)
    assert_scim_error(await http.get(f"{BASE}/Groups", headers=auth()), 404, None)
    assert_scim_error(await http.get(BASE, headers=auth()), 404, None)
    refused = await http.delete(f"{BASE}/Users", headers=auth())
    assert_scim_error(refused, 405, None)
    assert refused.headers["allow"] == "GET, POST"
    assert_scim_error(await http.post(f"{BASE}/Schemas", headers=auth()), 405, None)


#: What scim2-tester checks that fieldpush refuses on purpose: random role values
#: (a role must be one of fieldpush's), a changed userName (the token subject),
#: and an ``add`` to ``teams`` that it expects to replace the list (RFC 7644
#: §3.5.2.1: an add to a multi-valued attribute adds to it).
DELIBERATE = (
    "roles: the value must be one of",
    "userName cannot change",
    f"unexpected value for '{EXTENSION}:teams'",
)


async def test_compliance_by_scim2_tester(node: RunningNode) -> None:
    record_accounts(node)

    def run() -> list[Any]:
        with httpx2.Client(base_url=node.url + BASE, headers=auth()) as http:
            client = SyncSCIMClient(http)
            client.discover()
            return check_server(client)

    results = await asyncio.to_thread(run)  # a sync client: the node runs in this loop
    assert len(results) > 50
    failed = [r for r in results if r.status not in (Status.SUCCESS, Status.SKIPPED)]
    unexplained = [
        (r.title, r.reason) for r in failed if not any(d in (r.reason or "") for d in DELIBERATE)
    ]
    assert unexplained == []
    successes = sum(r.status == Status.SUCCESS for r in results)
    assert successes >= len(results) - 15, [(r.title, r.reason) for r in failed]
