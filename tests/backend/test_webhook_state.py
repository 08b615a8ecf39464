"""The webhook lease and cursor (fieldpush.backend.base.WebhookState), on each
backend: one holder at a time, renewal, expiry, growing fencing tokens, and a
cursor only the current holder can move."""

from __future__ import annotations

from typing import Any

from tests.support.backends import Sink
from tests.support.timing import eventually

LONG_MS = 60_000


async def test_one_holder_at_a_time_and_the_holder_renews(backend: tuple[Any, Sink]) -> None:
    state = backend[0].webhook
    token = await state.hold("a", LONG_MS)
    assert isinstance(token, int)
    assert await state.hold("b", LONG_MS) is None
    assert await state.hold("a", LONG_MS) == token  # renewed, same grant
    assert await state.hold("b", LONG_MS) is None


async def test_release_hands_over_with_a_greater_token(backend: tuple[Any, Sink]) -> None:
    state = backend[0].webhook
    first = await state.hold("a", LONG_MS)
    await state.release("b", first)  # not b's: nothing happens
    assert await state.hold("b", LONG_MS) is None
    await state.release("a", first + 1)  # not this grant's token: nothing happens
    assert await state.hold("b", LONG_MS) is None
    await state.release("a", first)
    second = await state.hold("b", LONG_MS)
    assert second is not None and second > first
    assert await state.hold("a", LONG_MS) is None


async def test_an_expired_lease_goes_to_the_next_asker(backend: tuple[Any, Sink]) -> None:
    state = backend[0].webhook
    first = await state.hold("a", 50)
    assert first is not None

    async def taken() -> bool:
        return await state.hold("b", LONG_MS) is not None

    await eventually(taken, message="the expired lease was not granted to b")
    second = await state.hold("b", LONG_MS)
    assert second is not None and second > first
    assert await state.hold("a", LONG_MS) is None  # a comes back: b keeps it


async def test_only_the_current_holder_moves_the_cursor(backend: tuple[Any, Sink]) -> None:
    state = backend[0].webhook
    assert await state.cursor() is None
    first = await state.hold("a", LONG_MS)
    assert await state.advance("a", first, "c1")
    assert await state.cursor() == "c1"
    assert not await state.advance("b", first, "forged")
    assert not await state.advance("a", first + 1, "forged")
    await state.release("a", first)
    assert not await state.advance("a", first, "late")  # released: fenced off
    second = await state.hold("b", LONG_MS)
    assert not await state.advance("a", first, "late")  # a's old grant: fenced off
    assert await state.cursor() == "c1"
    assert await state.advance("b", second, "c2")
    assert await state.cursor() == "c2"


async def test_hostile_holders_and_cursors_are_stored_as_opaque_text(
    backend: tuple[Any, Sink],
) -> None:
    state = backend[0].webhook
    holder = "node 1 \x00\n' -- \u00e9"
    token = await state.hold(holder, LONG_MS)
    assert token is not None
    assert await state.hold("node", LONG_MS) is None
    assert await state.advance(holder, token, "x" * 10_000)
    assert await state.cursor() == "x" * 10_000
