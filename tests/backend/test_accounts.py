"""Accounts' guarantees (fieldpush.backend.base.Accounts), on each backend
through the ``backend`` fixture: changes field by field, announced to every
node's listener, and a snapshot of everything; on Redis, a second backend
(another node) hears them too, and a reconnect asks for a resync."""

from __future__ import annotations

import time
from typing import Any

from fieldpush.backend.base import AccountChange, AccountState, RevokedToken
from tests.support.backends import Sink, make_backend, start_backend
from tests.support.redis_server import RedisServer
from tests.support.timing import eventually


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_user_never_changed_has_the_defaults(backend: tuple[Any, Sink]) -> None:
    store, sink = backend
    assert await store.accounts.state("nobody") == AccountState("nobody")
    snapshot = await store.accounts.snapshot()
    assert (snapshot.accounts, snapshot.revoked, sink.accounts) == ([], [], [])


async def test_changes_apply_field_by_field_and_are_announced(backend: tuple[Any, Sink]) -> None:
    store, sink = backend
    accounts = store.accounts
    at = now_ms()
    disabled = await accounts.change(
        AccountChange("ann", at=at, by="hr", active=False, tokens_valid_after=at)
    )
    assert disabled == AccountState(
        "ann", active=False, tokens_valid_after=at, changed_at=at, changed_by="hr"
    )
    # Another field: the others stay; tokens_valid_after never goes back.
    teams = await accounts.change(
        AccountChange(
            "ann", at=at + 1, by="scim", role="after_sales", teams=(), tokens_valid_after=5
        )
    )
    assert (teams.active, teams.tokens_valid_after, teams.role, teams.teams) == (
        False,
        at,
        "after_sales",
        (),
    )
    enabled = await accounts.change(AccountChange("ann", at=at + 2, by="hr", active=True))
    assert (enabled.active, enabled.tokens_valid_after, enabled.role) == (True, at, "after_sales")
    cleared = await accounts.change(AccountChange("ann", at=at + 3, by="scim", role=None))
    assert (cleared.role, cleared.teams, cleared.changed_by) == (None, (), "scim")
    assert await accounts.state("ann") == cleared
    await eventually(
        lambda: sink.accounts == [disabled, teams, enabled, cleared],
        message="every change announced, in order",
    )
    snapshot = await accounts.snapshot()
    assert snapshot.accounts == [cleared]


async def test_revoked_tokens_are_remembered_until_their_time(backend: tuple[Any, Sink]) -> None:
    store, sink = backend
    accounts = store.accounts
    later = now_ms() + 60_000
    await accounts.revoke(RevokedToken("t-1", later))
    await accounts.revoke(RevokedToken("t-2", now_ms() - 1))  # already past: forgotten
    await accounts.revoke(RevokedToken("t-1", later - 10))  # an earlier until never shortens
    snapshot = await accounts.snapshot()
    assert snapshot.revoked == [RevokedToken("t-1", later)]
    await eventually(
        lambda: [t.jti for t in sink.revoked] == ["t-1", "t-2", "t-1"],
        message="every revocation announced",
    )


async def test_another_node_hears_every_change(redis_url: str) -> None:
    first, second = Sink(), Sink()
    node_a, node_b = make_backend("redis", redis_url), make_backend("redis", redis_url)
    await start_backend(node_a, first, node="node-a", access=first)
    await start_backend(node_b, second, node="node-b", access=second)
    try:
        state = await node_a.accounts.change(AccountChange("bob", at=1, by="hr", active=False))
        await node_a.accounts.revoke(RevokedToken("jti with spaces", now_ms() + 60_000))
        await eventually(
            lambda: second.accounts == [state] and len(second.revoked) == 1,
            message="node b hears node a's changes",
        )
        assert second.revoked[0].jti == "jti with spaces"
        assert (await node_b.accounts.snapshot()).accounts == [state]
    finally:
        await node_a.close()
        await node_b.close()


async def test_a_lost_pub_sub_link_asks_for_a_resync(tmp_path: Any) -> None:
    server = RedisServer(tmp_path)
    server.start()
    sink = Sink()
    store = make_backend("redis", server.url)
    await start_backend(store, sink, access=sink)
    try:
        assert sink.resyncs == 0
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: sink.resyncs >= 1, message="a resync after the reconnect")
    finally:
        await store.close()
        server.stop()


async def test_a_malformed_announcement_asks_for_a_resync(redis_url: str) -> None:
    sink = Sink()
    store = make_backend("redis", redis_url)
    await start_backend(store, sink, access=sink)
    try:
        for payload in ("a {not json", "a []", "r notanumber x", "x y", "r 5"):
            await store._client.execute(b"PUBLISH", b"fp:ctl:access", payload)
        await eventually(lambda: sink.resyncs == 5, message="one resync per bad message")
        assert (sink.accounts, sink.revoked) == ([], [])
    finally:
        await store.close()
