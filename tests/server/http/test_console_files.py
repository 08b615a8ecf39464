"""The console's static files (GET /console/...): the listed names only, each
with the same-origin Content-Security-Policy; anything else is a 404."""

from __future__ import annotations

import httpx
import pytest

from fieldpush.http.console import CONTENT_SECURITY_POLICY, FILES
from tests.support.node import node_settings, running_node


async def test_every_console_file_is_served_with_the_policy() -> None:
    async with running_node(node_settings()) as node, httpx.AsyncClient() as http:
        redirect = await http.get(node.url + "/console")
        assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
        for name in ["", *FILES]:
            reply = await http.get(f"{node.url}/console/{name}")
            assert reply.status_code == 200, name
            assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.headers["content-type"] == FILES[name or "index.html"]
        index = (await http.get(node.url + "/console/")).text
        assert "<script>" not in index and "style=" not in index  # nothing inline


@pytest.mark.parametrize(
    "path", ["/console/missing.js", "/console/..%2Fsettings.py", "/console/%2e%2e/app.py"]
)
async def test_other_names_are_not_found(path: str) -> None:
    async with running_node(node_settings()) as node, httpx.AsyncClient() as http:
        reply = await http.get(node.url + path)
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"
