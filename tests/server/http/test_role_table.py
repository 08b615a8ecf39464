"""The role table of docs/compliance.md is what a running node does (issue 12):
each call of the table, made with a token of each role; a 403 is "—",
anything else (done, or refused for another reason, such as an unknown
device) is "yes"."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.node import RunningNode, running_node

ROOT = Path(__file__).resolve().parents[3]
ROLES = ("sales", "after_sales", "supervisor", "dispatcher", "admin", "service")

#: Column of the table -> (method, path, JSON body).
CALLS: dict[str, tuple[str, str, object]] = {
    "publish events": (
        "POST",
        "/v1/publish",
        {"channels": ["user:nobody"], "kind": "k", "priority": "normal", "data": {}},
    ),
    "read receipts": ("GET", "/v1/events/e-unknown/receipts", None),
    "disable, enable, revoke": ("POST", "/v1/admin/users/nobody/disable", None),
    "list devices": ("GET", "/v1/admin/users/nobody/devices", None),
    "wipe a device": ("POST", "/v1/admin/users/nobody/devices/no-device/wipe", None),
    "read the audit trail": ("GET", "/v1/audit", None),
    "export records": ("GET", "/v1/export/customer", None),
}


def documented() -> list[list[str]]:
    text = (ROOT / "docs" / "compliance.md").read_text()
    table = text.split("<!-- roles: begin -->")[1].split("<!-- roles: end -->")[0]
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


async def observed(node: RunningNode, http: httpx.AsyncClient, role: str) -> list[str]:
    row = [role]
    for method, path, body in CALLS.values():
        headers = {"Authorization": f"Bearer {node.token(f'u-{role}', role)}"}
        reply = await http.request(method, path, json=body, headers=headers)
        assert reply.status_code not in (401, 422, 500), (role, path, reply.text)
        row.append("—" if reply.status_code == 403 else "yes")
    return row


async def test_the_role_table_in_the_docs_is_what_the_node_does() -> None:
    header, _, *rows = documented()
    assert header == ["role", *CALLS]
    async with running_node() as node, httpx.AsyncClient(base_url=node.url) as http:
        actual = [await observed(node, http, role) for role in ROLES]
    assert rows == actual
