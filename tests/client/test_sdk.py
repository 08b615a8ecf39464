"""The SDK against a real node in-process: connect, receive, resume, de-duplicate."""

from __future__ import annotations

import asyncio
import random

import pytest

from fieldpush_client import (
    AccessRevoked,
    DispatcherClient,
    EventMsg,
    MemoryOffsetStore,
    PublishError,
    PushClient,
    RequestError,
    Unauthorized,
    backoff_delays,
)
from tests.support.backends import make_backend
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.timing import eventually, scaled


def fast_backoff() -> backoff_delays:  # type: ignore[valid-type]
    return backoff_delays(base_s=0.01, cap_s=0.05)


async def next_event(events: object) -> EventMsg:
    return await asyncio.wait_for(anext(events), scaled(5))  # type: ignore[arg-type]


def dispatcher(node: RunningNode) -> DispatcherClient:
    return DispatcherClient(node.url, node.token("disp", "dispatcher"))


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_receive_subscribe_ack_ping(codec: str) -> None:
    async with running_node() as node, dispatcher(node) as disp:
        token = node.token("alice", teams=("north", "east"))
        async with PushClient(
            node.ws_url, token=token, device="d1", codec=codec, subscriptions=["team:north"]
        ) as client:
            welcome = await client.wait_connected(scaled(5))
            assert set(welcome.subs) == {"user:alice", "team:north"}
            events = client.events()
            sent = await disp.publish(["team:north"], "note", {"n": 1})
            event = await next_event(events)
            assert (event.id, event.channel, event.data) == (sent.id, "team:north", {"n": 1})
            reply = await client.subscribe("team:east")
            assert reply.channel == "team:east" and reply.recovered
            with pytest.raises(RequestError) as refused:
                await client.subscribe("team:south")
            assert refused.value.code == "forbidden"
            await disp.publish(["team:east"], "note", {"n": 2})
            assert (await next_event(events)).channel == "team:east"
            await client.ack(event)
            assert await client.ping() > 0
            await eventually(lambda: node.node.metrics.acks >= 1, message="the ack is counted")
            assert client.offsets["team:north"] == event.offset  # recorded once handled
            assert client.offsets["team:east"] == reply.offset


async def test_resume_after_the_server_drops_the_connection() -> None:
    async with running_node() as node, dispatcher(node) as disp:
        token = node.token("alice", teams=("north",))
        async with PushClient(
            node.ws_url,
            token=token,
            device="d1",
            subscriptions=["team:north"],
            backoff=fast_backoff,
        ) as client:
            await client.wait_connected(scaled(5))
            events = client.events()
            first = await disp.publish(["team:north"], "note", {"n": 1})
            assert (await next_event(events)).id == first.id
            for conn in node.node.registry.connections():
                conn.close(1012, "test restart")  # type: ignore[arg-type]
            # Published while the client is away (or reconnecting): it must come exactly once.
            missed = [await disp.publish(["team:north"], "note", {"n": n}) for n in range(2, 6)]
            got = [await next_event(events) for _ in missed]
            assert [e.id for e in got] == [m.id for m in missed]
            live = await disp.publish(["team:north"], "note", {"n": 6})
            assert (await next_event(events)).id == live.id


async def test_recovery_failure_is_reported_and_the_client_continues() -> None:
    backend = make_backend("memory", None, history_max_events=100)
    failed: list[str] = []
    store = MemoryOffsetStore({"team:north": "stale-epoch:1-1"})
    async with running_node(backend=backend) as node, dispatcher(node) as disp:
        token = node.token("alice", teams=("north",))
        async with PushClient(
            node.ws_url, token=token, device="d1", store=store, on_recovery_failed=failed.append
        ) as client:
            await client.wait_connected(scaled(5))
            assert failed == ["team:north"]
            assert not store.get_all()["team:north"].startswith("stale-epoch")
            events = client.events()
            sent = await disp.publish(["team:north"], "note", {})
            assert (await next_event(events)).id == sent.id


async def test_duplicates_are_skipped_by_id() -> None:
    async with running_node() as node, dispatcher(node) as disp:
        token = node.token("alice", teams=("north",))
        sent = await disp.publish(
            ["team:north", "user:alice"], "note", {}
        )  # one event, two channels
        epoch_start = {ch: off.split(":")[0] + ":0-0" for ch, off in sent.offsets.items()}
        store = MemoryOffsetStore(epoch_start)
        async with PushClient(node.ws_url, token=token, device="d1", store=store) as client:
            events = client.events()
            assert (await next_event(events)).id == sent.id
            marker = await disp.publish(["user:alice"], "marker", {})
            assert (
                await next_event(events)
            ).id == marker.id  # the copy on the other channel was skipped


async def test_expired_token_is_fatal_and_not_retried() -> None:
    async with running_node() as node:
        attempts = 0

        def counting_backoff() -> backoff_delays:  # type: ignore[valid-type]
            nonlocal attempts
            attempts += 1
            return fast_backoff()

        client = PushClient(
            node.ws_url, token=node.token("alice", ttl_s=-60), device="d1", backoff=counting_backoff
        )
        async with client:
            with pytest.raises(Unauthorized) as caught:
                await next_event(client.events())
        assert caught.value.code == 4001
        assert attempts == 1  # created once, never used for a retry


async def test_a_disabled_account_ends_events_with_access_revoked_and_no_retry() -> None:
    attempts = 0

    def counting_backoff() -> backoff_delays:  # type: ignore[valid-type]
        nonlocal attempts
        attempts += 1
        return fast_backoff()

    async with running_node(node_settings()) as node:
        client = PushClient(
            node.ws_url, token=node.token("alice"), device="d1", backoff=counting_backoff
        )
        async with client:
            await client.wait_connected(scaled(5))
            await node.node.accounts.set_active("alice", False, actor="test")
            with pytest.raises(AccessRevoked) as caught:
                await next_event(client.events())
        assert (caught.value.code, caught.value.reason) == (4003, "account disabled")
        assert isinstance(caught.value, Unauthorized)  # what older apps catch
        assert attempts == 1  # never retried


async def test_dispatcher_errors_carry_status_and_code() -> None:
    async with running_node(node_settings()) as node:
        async with DispatcherClient(node.url, node.token("alice")) as sales:
            with pytest.raises(PublishError) as caught:
                await sales.publish(["team:north"], "note", {})
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        async with dispatcher(node) as disp:
            sent = await disp.publish(["team:north"], "note", {"n": 1})
            async with DispatcherClient(node.url, node.token("bob", teams=("north",))) as bob:
                start = sent.offsets["team:north"].split(":")[0] + ":0-0"
                polled = await bob.poll({"team:north": start})
            assert [e.id for e in polled.events] == [sent.id] and polled.recovered == {
                "team:north": True
            }


def test_backoff_grows_to_the_cap_with_full_jitter() -> None:
    delays = backoff_delays(base_s=1, cap_s=8, rng=random.Random(7))
    drawn = [next(delays) for _ in range(200)]
    bounds = [1, 2, 4, 8] + [8] * 196
    assert all(0 <= d <= b for d, b in zip(drawn, bounds, strict=True))
    assert max(drawn[4:]) > 4  # reaches beyond the earlier bounds
    assert min(drawn[4:]) < 2  # full jitter: small delays stay possible
    with pytest.raises(ValueError):
        next(backoff_delays(base_s=0))


async def test_the_hello_names_the_app_and_the_sdk_for_the_device_registry() -> None:
    from fieldpush_client import __version__

    async with running_node(node_settings()) as node:
        client = PushClient(node.ws_url, token=node.token("alice"), device="d1", app="dealer/2.3")
        async with client:
            await client.wait_connected(scaled(5))
            devices = await node.node.backend.devices.of_user("alice")
        assert [d.app for d in devices] == [f"dealer/2.3 fieldpush_client/{__version__}"]
    with pytest.raises(ValueError, match="app is too long"):
        PushClient("ws://x/v1/ws", token="t", device="d", app="x" * 100)
