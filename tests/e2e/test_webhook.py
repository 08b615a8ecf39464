"""Black-box: the change-feed webhook from two ``fieldpush serve`` processes on
one real redis-server to a receiver on port 0. The deliverer is killed with
SIGKILL (no goodbye, its lease still held): the other node takes over when
the lease expires and no entry is lost (a repeat is allowed: at least once,
de-duplicated by each entry's cursor: a re-sent batch may be cut differently)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.cli import ServeProcess
from tests.support.cluster import start_node, token
from tests.support.receiver import Receiver, receiver
from tests.support.scrape import value
from tests.support.timing import eventually, scaled

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0123456789abcdef0123456789abcdef"
CRM = {"Authorization": f"Bearer {token('crm', 'service')}"}


def webhook_node(redis_url: str, name: str, r: Receiver) -> ServeProcess:
    return start_node(
        redis_url,
        name,
        webhook_url=r.url,
        webhook_secret=SECRET,
        webhook_lease_s=str(scaled(1.5)),
        webhook_linger_s="0.02",
        webhook_backoff_min_s="0.01",
        webhook_backoff_max_s="0.05",
    )


async def delivering(http: httpx.AsyncClient, node: ServeProcess) -> bool:
    text = (await http.get(node.url + "/metrics")).text
    return value(text, "fieldpush_webhook_delivering") == 1


async def put(http: httpx.AsyncClient, node: ServeProcess, names: list[str]) -> None:
    for name in names:
        body = {"fields": {"name": name, "owner": "alice", "team": "north"}}
        reply = await http.put(f"{node.url}/v1/records/customer/c-{name}", json=body, headers=CRM)
        assert reply.status_code == 200, reply.text


async def test_a_killed_deliverer_is_replaced_and_nothing_is_lost(redis_url: str) -> None:
    async with receiver() as r, httpx.AsyncClient(timeout=scaled(10)) as http:
        nodes = [webhook_node(redis_url, "node-a", r), webhook_node(redis_url, "node-b", r)]
        try:

            async def which() -> list[bool]:
                return [await delivering(http, node) for node in nodes]

            flags = await eventually(
                which, until=lambda f: f.count(True) == 1, message="not one deliverer"
            )
            active, standby = (nodes[0], nodes[1]) if flags[0] else (nodes[1], nodes[0])
            await put(http, standby, ["a", "b", "c"])
            await eventually(lambda: len(r.entries()) >= 3, message="first entries")
            active.kill()
            await put(http, standby, ["d", "e"])
            await eventually(lambda: delivering(http, standby), timeout=15, message="no takeover")
            entries = await eventually(
                r.entries, until=lambda e: len(e) >= 5, timeout=15, message="entries lost"
            )
            assert [e["fields"]["name"]["new"] for e in entries] == ["a", "b", "c", "d", "e"]
            feed = await http.get(f"{standby.url}/v1/changes", headers=CRM)
            assert entries == feed.json()["changes"]
            r.verify_all(SECRET)
            assert SECRET not in standby.output
        finally:
            for node in nodes:
                node.stop()
