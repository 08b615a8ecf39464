"""The SDK with a token provider: it answers ``refresh_needed`` by itself and
stays connected across several short tokens; it asks the provider again for
every new connection."""

from __future__ import annotations

import asyncio
import time

import pytest

from fieldpush_client import DispatcherClient, EventMsg, PushClient, TokenProvider, backoff_delays
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.timing import eventually, scaled

#: Each token lives 3 s; the node asks for a new one 1 s before ``exp``.
TTL_S = 3


def _provider(
    node: RunningNode, asynchronous: bool
) -> tuple[TokenProvider, list[tuple[float, str]]]:
    """A provider of 3-second tokens for alice, and when it gave which."""
    calls: list[tuple[float, str]] = []

    def mint() -> str:
        token = node.token("alice", teams=("north",), ttl_s=TTL_S)
        calls.append((time.time(), token))
        return token

    async def mint_later() -> str:
        await asyncio.sleep(0)
        return mint()

    return (mint_later if asynchronous else mint), calls


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_provider_keeps_the_client_connected_across_several_expiries(
    asynchronous: bool,
) -> None:
    settings = node_settings(refresh_lead_s=1, refresh_grace_s=1)
    async with running_node(settings) as node:
        provider, calls = _provider(node, asynchronous)
        disp = DispatcherClient(node.url, node.token("disp", "dispatcher"))
        async with (
            disp,
            PushClient(
                node.ws_url, token=provider, device="d1", subscriptions=["team:north"]
            ) as client,
        ):
            await client.wait_connected(scaled(5))
            first_exp = calls[0][0] + TTL_S
            # Three tokens later the first ones are long expired (and their grace too).
            await eventually(
                lambda: len(calls) >= 4, timeout=4 * TTL_S + 5, message="three refreshes"
            )
            assert time.time() > first_exp + 1
            assert client.session is not None and client.connected
            assert client._welcomes == 1  # one connection all along
            events = client.events()
            sent = await disp.publish(["team:north"], "note", {"n": 1})
            event: EventMsg = await asyncio.wait_for(anext(events), scaled(5))
            assert event.id == sent.id
            assert node.node.metrics.closed[4001] == 0


async def test_every_connection_asks_the_provider_for_a_fresh_token() -> None:
    async with running_node() as node:
        provider, calls = _provider(node, asynchronous=True)
        async with PushClient(
            node.ws_url,
            token=provider,
            device="d1",
            backoff=lambda: backoff_delays(base_s=0.01, cap_s=0.05),
        ) as client:
            await client.wait_connected(scaled(5))
            assert len(calls) == 1
            for conn in node.node.registry.connections():
                conn.close(1012, "test restart")  # type: ignore[arg-type]
            await client.welcome_after(1)
            assert len(calls) == 2
            assert client.token == calls[1][1]


async def test_a_subscription_the_new_token_does_not_allow_is_dropped() -> None:
    settings = node_settings(refresh_lead_s=1, refresh_grace_s=1)
    async with running_node(settings) as node:
        teams = [("north", "south"), ("north",)]

        def provider() -> str:
            """North and south for the first connection, then north only."""
            current = teams.pop(0) if len(teams) > 1 else teams[0]
            return node.token("alice", teams=current, ttl_s=TTL_S)

        async with PushClient(
            node.ws_url, token=provider, device="d1", subscriptions=["team:north", "team:south"]
        ) as client:
            welcome = await client.wait_connected(scaled(5))
            assert {"team:north", "team:south"} <= set(welcome.subs)
            await eventually(
                lambda: "team:south" not in client.offsets,
                timeout=TTL_S + 5,
                message="team:south is dropped after the refresh",
            )
            assert "team:north" in client.offsets and client._welcomes == 1
