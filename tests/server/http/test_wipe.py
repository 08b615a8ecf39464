"""Remote wipe (issue 12, item 3), on each backend: a connected device gets
``wipe`` at once and nothing more; an offline one gets it right after its
next ``hello``, before any replay or pending event; its ``wiped`` closes it
with 4003 and it can never connect again; the SDK erases, calls the app's
hook and confirms; hostile calls change nothing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fieldpush_client import AccessRevoked, PushClient, SyncStore
from tests.conftest import NodeFactory
from tests.support.node import RunningNode
from tests.support.phones import Phone, phone, pong_next, publish
from tests.support.stores import STORE_KEY
from tests.support.timing import eventually, scaled


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    async with start_node() as running:
        yield running


def admin(node: RunningNode, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token('root', role)}"}


async def wipe(http: httpx.AsyncClient, node: RunningNode, user: str, device: str) -> str:
    reply = await http.post(f"/v1/admin/users/{user}/devices/{device}/wipe", headers=admin(node))
    assert reply.status_code == 202, reply.text
    assert reply.json()["state"] == "wipe_pending"
    wipe_id: str = reply.json()["wipe_id"]
    return wipe_id


async def states(http: httpx.AsyncClient, node: RunningNode, user: str) -> dict[str, str]:
    reply = await http.get(f"/v1/admin/users/{user}/devices", headers=admin(node))
    return {d["device"]: d["state"] for d in reply.json()}


async def test_a_connected_device_is_wiped_at_once_and_never_served_again(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    subs: dict[str, str | None] = {"team:north": None}
    async with (
        phone(node, "ann", teams=("north",), subs=subs, device="lost") as lost,
        phone(node, "ann", teams=("north",), subs=subs, device="kept") as kept,
    ):
        wipe_id = await wipe(http, node, "ann", "lost")
        assert await lost.recv() == {"type": "wipe", "id": wipe_id}
        await publish(node, ["team:north"], {"n": 1})
        assert (await kept.events(1))[0]["data"] == {"n": 1}
        refused = await lost.request({"type": "subscribe", "id": 7, "channel": "user:ann"})
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "forbidden", 7)
        await pong_next(lost)  # the event published to team:north never came
        wrong = await lost.request({"type": "wiped", "id": "w-not-this-one"})
        assert (wrong["type"], wrong["code"]) == ("error", "bad_request")
        assert await states(http, node, "ann") == {"lost": "wipe_pending", "kept": "active"}
        await lost.send({"type": "wiped", "id": wipe_id})
        assert await lost.closed_with() == 4003
        assert lost.ws.close_reason == "device wiped"
        await pong_next(kept)
    assert await states(http, node, "ann") == {"lost": "wiped", "kept": "active"}
    async with phone(node, "ann", device="lost", hello=False) as again:
        await again.send({"type": "hello", "token": node.token("ann"), "device": "lost"})
        assert await again.closed_with() == 4003
        assert again.ws.close_reason == "device wiped"
    # Both steps are in the audit trail (issue 12, item 4).
    await node.node.audit.flushed()
    steps = [
        (e.actor, e.role, e.device, e.action, e.target, e.outcome, e.fields)
        for e in await node.node.backend.audit.read(1, 100)
        if e.action.startswith("device.")
    ]
    assert steps == [
        ("root", "admin", "", "device.wipe", "device/ann/lost", "ok",
         {"state": [None, "wipe_pending"], "wipe_id": [None, wipe_id]}),
        ("ann", "sales", "lost", "device.wiped", "device/ann/lost", "ok",
         {"state": ["wipe_pending", "wiped"], "wipe_id": [None, wipe_id]}),
    ]  # fmt: skip


async def test_an_offline_device_gets_wipe_first_after_its_next_hello(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    async with phone(node, "bob", device="tablet") as tablet:
        offset = tablet.welcome["subs"]["user:bob"]["offset"]
    wipe_id = await wipe(http, node, "bob", "tablet")
    await publish(node, ["user:bob"], {"pending": True}, priority="critical")
    await publish(node, ["user:bob"], {"replayed": True})
    async with phone(node, "bob", device="tablet", subs={"user:bob": offset}) as tablet:
        assert await tablet.recv() == {"type": "wipe", "id": wipe_id}
        await pong_next(tablet)  # no replay, no pending critical event
        await tablet.send({"type": "wiped", "id": wipe_id})
        assert await tablet.closed_with() == 4003


async def test_the_sdk_erases_calls_the_hook_and_confirms(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    erased = asyncio.Event()

    async def erase_everything() -> None:
        erased.set()

    client = PushClient(
        node.ws_url,
        token=node.token("cy"),
        device="pixel",
        subscriptions=["broadcast"],
        on_wipe=erase_everything,
    )
    async with client:
        await client.wait_connected(scaled(5))
        await wipe(http, node, "cy", "pixel")
        with pytest.raises(AccessRevoked) as caught:
            await asyncio.wait_for(anext(client.events()), scaled(5))
        assert (caught.value.code, caught.value.reason) == (4003, "device wiped")
    assert erased.is_set()

    async def wiped() -> bool:
        return (await states(http, node, "cy")) == {"pixel": "wiped"}

    await eventually(wiped, message="the device is wiped")


async def test_on_wipe_can_erase_the_sync_store_files(
    node: RunningNode, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "phone.db"
    store = SyncStore(path, key=STORE_KEY)
    store.edit("customer", "c-1", {"name": "Quarry Holdings"})
    assert path.exists()
    client = PushClient(node.ws_url, token=node.token("gil"), device="pixel", on_wipe=store.erase)
    async with client:
        await client.wait_connected(scaled(5))
        await wipe(http, node, "gil", "pixel")
        with pytest.raises(AccessRevoked):
            await asyncio.wait_for(anext(client.events()), scaled(5))
    assert os.listdir(tmp_path) == []  # the file, its -wal and -shm: all gone


async def test_a_failing_hook_leaves_the_wipe_pending(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    def broken() -> None:
        raise OSError("disk full")

    client = PushClient(node.ws_url, token=node.token("dee"), device="pixel", on_wipe=broken)
    async with client:
        await client.wait_connected(scaled(5))
        await wipe(http, node, "dee", "pixel")
        await eventually(
            lambda: any(s.wiping for s in node.node.registry.sessions()),
            message="the wipe reached the session",
        )
        assert await states(http, node, "dee") == {"pixel": "wipe_pending"}


async def test_wipe_needs_an_admin_and_a_known_device(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    async with phone(node, "eve", device="d1"):
        pass
    for role in ("service", "dispatcher", "supervisor", "sales"):
        reply = await http.post("/v1/admin/users/eve/devices/d1/wipe", headers=admin(node, role))
        assert (reply.status_code, reply.json()["error"]["code"]) == (403, "forbidden")
    unknown = await http.post("/v1/admin/users/eve/devices/d9/wipe", headers=admin(node))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")
    for path in ("eve/devices/" + "x" * 129, "e%20ve/devices/d1", "e%0Ave/devices/d1"):
        reply = await http.post(f"/v1/admin/users/{path}/wipe", headers=admin(node))
        assert reply.status_code == 422, path
    assert await states(http, node, "eve") == {"d1": "active"}


async def test_a_wiped_message_before_any_wipe_is_a_bad_request(node: RunningNode) -> None:
    device: Phone
    async with phone(node, "fay") as device:
        reply = await device.request({"type": "wiped", "id": "w-1"})
        assert (reply["type"], reply["code"]) == ("error", "bad_request")
        for bad in ({"type": "wiped"}, {"type": "wiped", "id": 5}, {"type": "wiped", "id": ""}):
            reply = await device.request(bad)
            assert (reply["type"], reply["code"]) == ("error", "bad_request"), bad
        await pong_next(device)
