"""The SDK's dispatch features against a real node in-process: automatic and
manual acks, redelivery after a failed handler, receipts and presence for
dispatchers, poll schedules, and the long-poll fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from fieldpush_client import DispatcherClient, EventMsg, PushClient, Receipt, backoff_delays
from fieldpush_client.fallback import http_url_for, token_subject
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.timing import eventually, scaled


def fast_backoff() -> backoff_delays:  # type: ignore[valid-type]
    return backoff_delays(base_s=0.01, cap_s=0.05)


async def next_event(events: AsyncIterator[EventMsg]) -> EventMsg:
    return await asyncio.wait_for(anext(events), scaled(5))


def alice(node: RunningNode, **options: Any) -> PushClient:
    return PushClient(node.ws_url, token=node.token("alice"), device="d1", **options)


def dispatcher(node: RunningNode) -> DispatcherClient:
    return DispatcherClient(node.url, node.token("disp", "dispatcher"))


async def receipt(disp: DispatcherClient, event_id: str, user: str = "alice") -> Receipt:
    return (await disp.receipts(event_id)).of(user)


async def acked(disp: DispatcherClient, event_id: str) -> bool:
    return (await receipt(disp, event_id)).acked_at is not None


async def test_critical_events_are_acked_once_the_handler_returned() -> None:
    async with running_node() as node, dispatcher(node) as disp, alice(node) as client:
        await client.wait_connected(scaled(5))
        events = client.events()
        urgent = await disp.publish(["user:alice"], "work_order.urgent", {}, priority="critical")
        assert (await next_event(events)).id == urgent.id
        # Handed out, not handled yet: delivered, not acked.
        await eventually(
            lambda: _delivered(disp, urgent.id),
            message="the delivery of the critical event is recorded",
        )
        assert not await acked(disp, urgent.id)
        marker = await disp.publish(["user:alice"], "note", {})
        assert (await next_event(events)).id == marker.id  # the handler returned
        await eventually(lambda: acked(disp, urgent.id), message="the event is acked")
        assert (await receipt(disp, urgent.id)).device == "d1"
        assert node.node.metrics.acks == 1  # the normal event was not acked


async def _delivered(disp: DispatcherClient, event_id: str) -> bool:
    return (await receipt(disp, event_id)).delivered_at is not None


async def test_a_failed_handler_gets_the_event_again_and_it_is_acked_only_then() -> None:
    async with running_node() as node, dispatcher(node) as disp, alice(node) as client:
        await client.wait_connected(scaled(5))
        urgent = await disp.publish(["user:alice"], "work_order.urgent", {}, priority="critical")
        with pytest.raises(RuntimeError):
            async for event in client.events():
                assert event.id == urgent.id
                raise RuntimeError("the app failed to show it")
        offset_before = client.offsets.get("user:alice")
        events = client.events()
        again = await next_event(events)
        assert again.id == urgent.id  # not hidden by de-duplication
        assert not await acked(disp, urgent.id)
        assert client.offsets.get("user:alice") == offset_before
        marker = await disp.publish(["user:alice"], "note", {})
        assert (await next_event(events)).id == marker.id
        await eventually(lambda: acked(disp, urgent.id), message="the event is acked")
        assert client.offsets["user:alice"] == again.offset


async def test_manual_mode_acks_only_when_the_app_says_so() -> None:
    async with (
        running_node() as node,
        dispatcher(node) as disp,
        PushClient(node.ws_url, token=node.token("alice"), device="d1", auto_ack=False) as client,
    ):
        await client.wait_connected(scaled(5))
        events = client.events()
        urgent = await disp.publish(["user:alice"], "work_order.urgent", {}, priority="critical")
        event = await next_event(events)
        marker = await disp.publish(["user:alice"], "note", {})
        assert (await next_event(events)).id == marker.id
        await client.ping()  # the server has read everything the client sent
        assert not await acked(disp, urgent.id)
        await client.ack(event)
        await eventually(lambda: acked(disp, urgent.id), message="the manual ack is recorded")


async def test_a_handled_critical_event_sent_again_is_acked_not_handed_out() -> None:
    """The ack of a handled event was lost (here: never sent): the server sends
    the event again on the next connection; the client acks it and skips it."""
    async with (
        running_node() as node,
        dispatcher(node) as disp,
        PushClient(
            node.ws_url,
            token=node.token("alice"),
            device="d1",
            auto_ack=False,
            backoff=fast_backoff,
        ) as client,
    ):
        await client.wait_connected(scaled(5))
        events = client.events()
        urgent = await disp.publish(["user:alice"], "work_order.urgent", {}, priority="critical")
        assert (await next_event(events)).id == urgent.id
        first = await disp.publish(["user:alice"], "note", {})
        assert (await next_event(events)).id == first.id  # urgent handled, not acked
        client.auto_ack = True
        for conn in node.node.registry.connections():
            conn.close(1012, "test restart")  # type: ignore[arg-type]
        await eventually(lambda: acked(disp, urgent.id), message="the resent event is acked")
        marker = await disp.publish(["user:alice"], "note", {})
        assert (await next_event(events)).id == marker.id  # urgent not handed out twice


async def test_dispatchers_read_receipts_and_presence() -> None:
    async with running_node() as node, dispatcher(node) as disp:
        token = node.token("alice", teams=("north",))
        async with PushClient(
            node.ws_url, token=token, device="pixel-7", subscriptions=["team:north"]
        ) as client:
            welcome = await client.wait_connected(scaled(5))

            async def online() -> bool:
                return (await disp.presence_of_user("alice")).online

            await eventually(online, message="alice is online")
            user = await disp.presence_of_user("alice")
            (device,) = user.devices
            assert (device.device, device.session, device.node) == (
                "pixel-7",
                welcome.session,
                "test-node",
            )
            team = await disp.presence_of_channel("team:north")
            assert [d.device for d in team.users["alice"]] == ["pixel-7"]
            assert (await disp.presence_of_user("nobody")).online is False

            urgent = await disp.publish(
                ["team:north"], "work_order.urgent", {}, priority="critical", ack_deadline_s=60
            )
            await next_event(client.events())
            receipts = await disp.receipts(urgent.id)
            assert receipts.kind == "work_order.urgent"
            assert receipts.deadline_at == receipts.published_at + 60_000
            assert [r.user for r in receipts.recipients] == ["alice"]


async def test_poll_schedules_follow_the_advertised_intervals() -> None:
    settings = node_settings(poll_intervals_s={"low": 900, "visit_plan": 0.05})
    async with running_node(settings) as node:
        fetched: list[str] = []
        enough = asyncio.Event()

        async def fetch_visit_plans() -> None:
            fetched.append("visit_plan")
            if len(fetched) == 3:
                enough.set()
            if len(fetched) == 1:
                raise RuntimeError("a failing fetch does not end the schedule")

        async def fetch_unknown() -> None:
            fetched.append("unknown")

        client = PushClient(node.ws_url, token=node.token("alice"), device="d1")
        client.schedule_poll("visit_plan", fetch_visit_plans)
        async with client:
            client.schedule_poll("unknown_class", fetch_unknown)
            with pytest.raises(ValueError):
                client.schedule_poll("visit_plan", fetch_visit_plans)
            await asyncio.wait_for(enough.wait(), scaled(5))
        assert fetched.count("unknown") == 0


async def test_long_poll_fallback_after_socket_failures_then_back_to_the_socket() -> None:
    """The node refuses upgrades (its one connection is taken): the client
    receives and acks over HTTP, then returns to the socket once it can."""
    settings = node_settings(max_connections=1)
    async with running_node(settings) as node, dispatcher(node) as disp:
        holder = PushClient(node.ws_url, token=node.token("bob"), device="b1")
        async with holder:
            await holder.wait_connected(scaled(5))
            client = PushClient(
                node.ws_url,
                token=node.token("alice"),
                device="d1",
                backoff=fast_backoff,
                subscriptions=["team:south"],  # not readable: dropped, the rest goes on
                fallback_after_failures=2,
                socket_retry_s=0.3,
                poll_wait_s=0.2,
            )
            async with client:
                await eventually(_is(client, "poll"), message="the client falls back to polling")

                async def polled_once() -> bool:  # its position: "from now" until then
                    return "user:alice" in client.offsets

                await eventually(polled_once, message="the first poll answered")
                events = client.events()
                urgent = await disp.publish(
                    ["user:alice"], "work_order.urgent", {}, priority="critical"
                )
                assert (await next_event(events)).id == urgent.id
                marker = await disp.publish(["user:alice"], "note", {})
                assert (await next_event(events)).id == marker.id
                await eventually(
                    lambda: acked(disp, urgent.id), message="the ack by HTTP is recorded"
                )
                assert (await receipt(disp, urgent.id)).device == "d1"
                await holder.close()
                await client.wait_connected(scaled(5))
                assert client.transport == "websocket"
                live = await disp.publish(["user:alice"], "note", {})
                assert (await next_event(events)).id == live.id  # nothing twice


def _is(client: PushClient, transport: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return client.transport == transport

    return check


async def test_http_ack_validates_its_body() -> None:
    async with running_node() as node:
        headers = {"Authorization": f"Bearer {node.token('alice')}"}
        async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
            for body, field in [
                ({"ids": [], "device": "d1"}, "ids"),
                ({"ids": [7], "device": "d1"}, "ids"),
                ({"ids": ["e1"]}, "device"),
                ({"ids": ["e1"], "device": "d1", "extra": 1}, "extra"),
            ]:
                reply = await http.post("/v1/ack", json=body, headers=headers)
                assert reply.status_code == 422, reply.text
                assert reply.json()["error"]["message"].startswith(f"{field}:")
            assert (
                await http.post("/v1/ack", json={"ids": ["e1"], "device": "d1"})
            ).status_code == 401
            reply = await http.post(
                "/v1/ack", json={"ids": ["unknown"], "device": "d1"}, headers=headers
            )
            assert reply.status_code == 204  # unknown ids are ignored, as on the socket


def test_the_fallback_finds_the_http_api_and_the_user() -> None:
    assert http_url_for("wss://push.example.com/v1/ws") == "https://push.example.com"
    assert http_url_for("ws://127.0.0.1:8080/v1/ws/") == "http://127.0.0.1:8080"
    assert http_url_for("ws://lb.example.com/fieldpush/v1/ws") == "http://lb.example.com/fieldpush"
    with pytest.raises(ValueError):
        http_url_for("ftp://x")
    settings = node_settings()
    from fieldpush.identity.auth import mint_token

    assert (
        token_subject(mint_token(settings, user="alice", role="sales", teams=(), ttl_s=60))
        == "alice"
    )
    assert token_subject("not-a-jwt") is None
