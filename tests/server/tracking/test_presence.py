"""Presence of users and channels, and the per-user connection cap.

In-process nodes on real sockets, on each backend (``start_node``). Across
nodes (a node killed, the cap on another node) in tests/e2e/test_dispatch.py.
"""

from __future__ import annotations

from tests.support.node import NodeFactory
from tests.support.phones import api_get, phone, pong_next, wait_for_presence, wait_for_user

# ------------------------------------------------------------------- presence


async def test_presence_of_users_and_channels(start_node: NodeFactory) -> None:
    async with start_node() as node:
        async with (
            phone(node, "alice", teams=("north",), subs={"team:north": None}, device="a1"),
            phone(node, "alice", device="a2"),
            phone(node, "bob", teams=("north",), subs={"team:north": None}, device="b1"),
        ):
            body = await wait_for_presence(node, "team:north", {"alice", "bob"})
            devices = {u["user"]: [d["device"] for d in u["devices"]] for u in body["users"]}
            assert devices == {"alice": ["a1"], "bob": ["b1"]}
            user = await wait_for_user(node, "alice", lambda b: len(b["devices"]) == 2)
            assert user["online"] is True
            assert [d["device"] for d in user["devices"]] == ["a1", "a2"]  # oldest first
            for device in user["devices"]:
                assert device["node"] == "test-node"
                assert device["since"] <= device["last_seen"]
        offline = await wait_for_user(node, "alice", lambda b: not b["online"])
        assert offline["devices"] == [] and offline["last_seen"] is not None
        await wait_for_presence(node, "team:north", set())
        never = (await api_get(node, "/v1/presence/users/nobody")).json()
        assert never == {"user": "nobody", "online": False, "last_seen": None, "devices": []}
        for path in ("/v1/presence?channel=broadcast", "/v1/presence/users/alice"):
            assert (await api_get(node, path, role="sales")).status_code == 403
        assert (await api_get(node, "/v1/presence")).status_code == 422
        assert (await api_get(node, "/v1/presence?channel=bogus")).status_code == 422


# ------------------------------------------------------------ per-user cap


async def test_connection_cap_per_user_closes_the_oldest(start_node: NodeFactory) -> None:
    async with (
        start_node(max_connections_per_user=2) as node,
        phone(node, "alice", device="d1") as oldest,
        phone(node, "alice", device="d2") as second,
    ):
        await wait_for_user(node, "alice", lambda b: len(b["devices"]) == 2)
        async with phone(node, "alice", device="d3") as newest:
            assert await oldest.closed_with() == 4029
            await pong_next(second)
            await pong_next(newest)


async def test_connection_cap_per_user_refuses_the_newest(start_node: NodeFactory) -> None:
    settings = {"max_connections_per_user": 1, "connections_per_user_policy": "newest"}
    async with start_node(**settings) as node, phone(node, "alice") as first:
        await wait_for_user(node, "alice", lambda b: b["online"])
        async with phone(node, "alice", hello=False) as refused:
            await refused.send({"type": "hello", "token": node.token("alice"), "device": "x"})
            assert await refused.closed_with() == 4029
        await pong_next(first)
        async with phone(node, "bob"):
            pass  # other users are not affected
