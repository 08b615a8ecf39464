"""``X-Request-Id`` on every HTTP response and in the request's log lines;
CORS for the ``cors_origins`` allow-list only (hostile ids and origins)."""

from __future__ import annotations

import logging

import httpx
import pytest

from fieldpush.http.requests import MAX_REQUEST_ID_LENGTH
from fieldpush.logs import REQUEST_ID
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.timing import scaled

CONSOLE = "https://console.example.com"


async def call(node: RunningNode, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=node.url, timeout=scaled(10)) as http:
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_a_safe_request_id_is_echoed_and_others_are_replaced() -> None:
    async with running_node() as node:
        for path in ("/healthz", "/v1/nowhere", "/v1/publish"):
            own = await call(node, "GET", path, headers={"X-Request-Id": "crm-7f3a:1.b_c"})
            assert own.headers["x-request-id"] == "crm-7f3a:1.b_c", path
        fresh = [(await call(node, "GET", "/healthz")).headers["x-request-id"] for _ in range(2)]
        assert fresh[0] != fresh[1] and all(len(i) == 16 for i in fresh)
        hostile = [
            "a" * 10_000,
            "a" * (MAX_REQUEST_ID_LENGTH + 1),
            "id\tforged",
            "id\x1b[31m",
            "é",
            "id with space",
            "",
        ]
        served = 0
        for forged in hostile:
            raw = [(b"x-request-id", forged.encode())]
            reply = await call(node, "POST", "/v1/publish", headers=raw)
            if reply.status_code in (400, 431):  # refused by the HTTP parser, before the app
                assert forged not in str(reply.headers)
                continue
            assert reply.status_code == 401  # the request itself is served as usual
            echoed = reply.headers["x-request-id"]
            assert echoed != forged and len(echoed) == 16 and echoed.isalnum()
            served += 1
        assert served >= 4  # too long, non-ASCII, a space, empty: replaced by the app
        at_limit = "b" * MAX_REQUEST_ID_LENGTH
        reply = await call(node, "GET", "/healthz", headers={"X-Request-Id": at_limit})
        assert reply.headers["x-request-id"] == at_limit


async def test_the_log_lines_of_a_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str | None] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "fieldpush.publish":
                seen.append(REQUEST_ID.get())

    handler = Capture()
    logging.getLogger("fieldpush.publish").addHandler(handler)
    caplog.set_level(logging.INFO, "fieldpush.publish")
    try:
        async with running_node() as node:
            headers = {"Authorization": f"Bearer {node.token('d', 'dispatcher')}"}
            body = {"channels": ["team:north"], "kind": "k", "data": {}}
            reply = await call(
                node, "POST", "/v1/publish", json=body, headers={**headers, "X-Request-Id": "r-1"}
            )
            assert reply.status_code == 201
    finally:
        logging.getLogger("fieldpush.publish").removeHandler(handler)
    assert seen == ["r-1"]
    assert REQUEST_ID.get() is None  # reset after the request


async def test_cors_answers_the_allowed_origin_only() -> None:
    async with running_node(node_settings(cors_origins=(CONSOLE,))) as node:
        preflight = {
            "Origin": CONSOLE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        allowed = await call(node, "OPTIONS", "/v1/publish", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == CONSOLE
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        for hostile in (
            "https://evil.example.net",
            "null",
            CONSOLE + ".evil.net",
            "http://console.example.com",
        ):
            refused = await call(
                node, "OPTIONS", "/v1/publish", headers={**preflight, "Origin": hostile}
            )
            assert refused.status_code == 400
            assert "access-control-allow-origin" not in refused.headers
            simple = await call(node, "GET", "/healthz", headers={"Origin": hostile})
            assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
        simple = await call(node, "GET", "/healthz", headers={"Origin": CONSOLE})
        assert simple.headers["access-control-allow-origin"] == CONSOLE
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_without_cors_origins_no_cors_header_at_all() -> None:
    async with running_node() as node:
        preflight = {"Origin": CONSOLE, "Access-Control-Request-Method": "POST"}
        reply = await call(node, "OPTIONS", "/v1/publish", headers=preflight)
        assert not any(name.startswith("access-control-") for name in reply.headers)
        reply = await call(node, "GET", "/healthz", headers={"Origin": CONSOLE})
        assert not any(name.startswith("access-control-") for name in reply.headers)
