"""Black-box: ``fieldpush users`` and ``fieldpush tokens revoke`` through one
running node close the user's sockets on every ``fieldpush serve`` node (4003)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import httpx
import pytest

from tests.support.cli import ServeProcess, run
from tests.support.cluster import token
from tests.support.phones import connect_phone
from tests.support.timing import eventually, scaled

pytestmark = pytest.mark.e2e


async def fieldpush(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``fieldpush`` command, without blocking the phones' event loop."""
    return await asyncio.to_thread(run, *args)


async def test_users_and_tokens_commands_reach_every_node(
    cluster: tuple[ServeProcess, ServeProcess],
) -> None:
    node_a, node_b = cluster
    alice, bob = token("alice"), token("bob")
    async with (
        connect_phone(node_a.ws_url, alice) as alice_on_a,
        connect_phone(node_b.ws_url, alice, device="phone-2") as alice_on_b,
        connect_phone(node_a.ws_url, bob) as bob_on_a,
    ):
        disabled = await fieldpush("users", "disable", "alice", "--url", node_a.url)
        assert disabled.returncode == 0, disabled.stderr
        assert json.loads(disabled.stdout)["active"] is False
        assert await alice_on_b.closed_with() == 4003
        assert await alice_on_a.closed_with() == 4003

        shown = await fieldpush("users", "show", "alice", "--url", node_b.url)
        assert shown.returncode == 0, shown.stderr
        state = json.loads(shown.stdout)
        assert (state["active"], state["changed_by"]) == (False, "cli (admin)")

        revoked = await fieldpush("tokens", "revoke", "--user", "bob", "--url", node_b.url)
        assert revoked.returncode == 0, revoked.stderr
        assert await bob_on_a.closed_with() == 4003

    enabled = await fieldpush("users", "enable", "alice", "--url", node_b.url)
    assert enabled.returncode == 0 and json.loads(enabled.stdout)["active"] is True
    async with httpx.AsyncClient(timeout=scaled(10)) as http:

        async def new_token_works() -> bool:
            headers = {"Authorization": f"Bearer {token('alice')}"}
            body = {"subs": {"user:alice": None}}
            return (await http.post(node_a.url + "/v1/poll", json=body, headers=headers)).is_success

        await eventually(new_token_works, timeout=3, message="alice's new token is accepted")


async def test_the_commands_say_what_went_wrong(
    cluster: tuple[ServeProcess, ServeProcess],
) -> None:
    node_a, _ = cluster
    bad_id = await fieldpush("users", "disable", "al ice", "--url", node_a.url)
    assert bad_id.returncode == 1 and "422" in bad_id.stderr and "id:" in bad_id.stderr
    sales = await fieldpush("users", "show", "x", "--url", node_a.url, "--token", token("s"))
    assert sales.returncode == 1 and "403" in sales.stderr
    unreachable = await fieldpush("users", "show", "x", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach http://127.0.0.1:9" in unreachable.stderr
    both = await fieldpush("tokens", "revoke", "--jti", "j", "--user", "u", "--url", node_a.url)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    for result in (bad_id, sales, unreachable, both):
        assert "Traceback" not in result.stderr
