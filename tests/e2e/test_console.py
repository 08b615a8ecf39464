"""The dispatcher console (/console) in Debian's headless Chromium against a real
``fieldpush serve``: sign in, a critical work order turning delivered then acked
on an SDK phone, an escalation for a phone that does not ack, keyboard use, a
768 px viewport, hostile text, a wrong token, and a node that goes away.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from fieldpush.http.console import CONTENT_SECURITY_POLICY
from fieldpush_client import PushClient
from tests.support.browser import artifacts_dir, console_node, free_port, launch
from tests.support.cli import ServeProcess
from tests.support.cluster import token
from tests.support.phones import connect_phone
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

FAST = {"escalation_interval_s": "0.05", "escalation_lease_s": "1"}
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'


async def sign_in(page: Page, node: ServeProcess, secret: str) -> None:
    await page.goto(node.url + "/console")
    await page.fill("#token", secret)
    await page.press("#token", "Enter")


def state_of(page: Page, event_user: str) -> Locator:
    return page.locator(f'#sent tr[data-user="{event_user}"] td.state')


async def test_console_sends_and_watches_receipts_and_escalations(
    redis_url: str, chromium: Path
) -> None:
    node = console_node(redis_url, "node-a", free_port(), **FAST)
    try:
        async with httpx.AsyncClient(timeout=scaled(10)) as http:
            reply = await http.get(node.url + "/console/")
            assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        handled = asyncio.Event()
        seen: list[str] = []

        async def alice_phone(client: PushClient) -> None:
            async for event in client.events():
                seen.append(event.id)
                await handled.wait()  # acked when the loop asks for the next event

        async with (
            launch(chromium) as browser,
            PushClient(node.ws_url, token=token("alice"), device="a-phone") as alice,
            connect_phone(node.ws_url, token("bob"), device="b-phone"),  # never acks
        ):
            phone = asyncio.create_task(alice_phone(alice))
            page = await browser.new_page()
            await sign_in(page, node, token("disp", "dispatcher"))
            await expect(page.locator("#status")).to_contain_text("Connected as disp")
            assert await page.evaluate("location.href") == node.url + "/console/"

            # Keyboard only: focus the recipient, Tab to the fields, Enter sends.
            await page.focus("#target")
            await page.keyboard.type("alice")
            await page.keyboard.press("Tab")  # -> kind
            await page.keyboard.press("Tab")  # -> priority (critical is the default)
            await page.keyboard.press("Tab")  # -> deadline
            await page.keyboard.press("Tab")  # -> text
            assert await page.evaluate("document.activeElement.id") == "text"
            await page.keyboard.type("Pump 7 " + HOSTILE)
            await page.keyboard.press("Enter")
            alice_state = state_of(page, "alice")
            await expect(alice_state).to_have_text("delivered", timeout=scaled(10) * 1000)
            await expect(page.locator("#pending-count")).to_have_text("1")
            handled.set()
            await expect(alice_state).to_have_text("acked", timeout=scaled(10) * 1000)
            await expect(page.locator("#pending-count")).to_have_text("0")
            await expect(page.locator("#latency-summary")).to_contain_text("1 deliveries")

            # Hostile text shows as text: no element made from it, no script ran.
            text_cell = page.locator('#sent tr[data-user="alice"] td.text')
            assert await text_cell.text_content() == "Pump 7 " + HOSTILE
            assert await page.locator("#sent script, #sent img, #pending img").count() == 0
            assert await page.evaluate("window.pwned === undefined")

            # Bob does not ack: the escalation fires after its 1 s deadline.
            await page.select_option("#priority", "critical")
            await page.fill("#target", "bob")
            await page.fill("#deadline", "1")
            await page.fill("#text", "Leak at depot")
            await page.click("#send-button")
            await expect(state_of(page, "bob")).to_have_text("delivered", timeout=scaled(10) * 1000)
            escalation = page.locator("#escalations li")
            await expect(escalation).to_contain_text("Leak at depot", timeout=scaled(15) * 1000)
            await expect(escalation).to_contain_text("not acked by bob")

            # Presence by team, and a tablet's width without horizontal scroll.
            await page.fill("#team", "north")
            await page.press("#team", "Enter")
            await expect(page.locator('#presence ul[data-team="north"]')).to_be_visible()
            await page.set_viewport_size({"width": 768, "height": 1024})
            wide = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"{wide} px of horizontal scroll at 768 px"
            await page.screenshot(path=str(artifacts_dir() / "console-768.png"), full_page=True)
            phone.cancel()
            assert seen, "the SDK phone got the work order"
    finally:
        assert node.stop() == 0, node.output


async def test_a_wrong_token_is_a_clear_sign_in_error(redis_url: str, chromium: Path) -> None:
    node = console_node(redis_url, "node-a", free_port())
    try:
        async with launch(chromium) as browser:
            page = await browser.new_page()
            await sign_in(page, node, "not-a-token")
            await expect(page.locator("#signin-error")).to_contain_text("token was refused")
            assert await page.locator("#workspace").is_hidden()
            assert await page.evaluate("sessionStorage.length") == 0
            await sign_in(page, node, token("alice"))  # valid, but no dispatcher
            await expect(page.locator("#signin-error")).to_contain_text("may not watch")
    finally:
        assert node.stop() == 0, node.output


async def test_the_console_says_the_node_went_away_and_reconnects(
    redis_url: str, chromium: Path
) -> None:
    port = free_port()
    node = console_node(redis_url, "node-a", port)
    again: ServeProcess | None = None
    try:
        async with launch(chromium) as browser:
            page = await browser.new_page()
            await sign_in(page, node, token("disp", "dispatcher"))
            await expect(page.locator("#status")).to_contain_text("on node-a")
            assert node.stop() == 0, node.output  # goaway, then the socket closes
            await expect(page.locator("#status")).to_contain_text("Disconnected")
            again = console_node(redis_url, "node-b", port)
            await expect(page.locator("#status")).to_contain_text(
                "on node-b", timeout=scaled(15) * 1000
            )
    finally:
        node.stop()
        if again is not None:
            assert again.stop() == 0, again.output
