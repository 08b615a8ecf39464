"""``GET /v1/export/{type}`` (issue 12, item 6), on each backend: an admin's
streamed export in NDJSON or CSV, in the phones' or the CRM's names, with one
audit entry holding the row count and the SHA-256 of exactly what was sent;
other roles 403 (audited); hostile queries 422; nothing exported unrecorded."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import fieldpush.sync.export
from fieldpush.errors import BackendUnavailable
from fieldpush.http.export import ExportStream
from tests.conftest import NodeFactory
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.proxy import proxy_to
from tests.support.redis_server import RedisServer
from tests.support.timing import eventually

MAPPINGS = """
[phone.customer.model_pref]
field = "intended_model"

[crm.customer.budget]
convert = "string"
"""


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.toml"
    path.write_text(MAPPINGS)
    return path


@pytest.fixture
async def node(start_node: NodeFactory, mappings: Path) -> AsyncIterator[RunningNode]:
    async with start_node(mappings_path=str(mappings)) as running:
        yield running


def bearer(node: RunningNode, role: str = "admin", user: str = "root") -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(user, role)}"}


async def put(http: httpx.AsyncClient, node: RunningNode, rid: str, **fields: Any) -> None:
    reply = await http.put(
        f"/v1/records/customer/{rid}", json={"fields": fields}, headers=bearer(node, "service")
    )
    assert reply.status_code == 200, reply.text


async def delete(http: httpx.AsyncClient, node: RunningNode, rid: str) -> None:
    mutation = {"mid": f"del-{rid}", "type": "customer", "rid": rid, "fields": None}
    mutation["hlc"] = [time.time_ns() // 1_000_000, 0]
    reply = await http.post(
        "/v1/sync/push", json={"mutations": [mutation]}, headers=bearer(node, "service")
    )
    assert reply.json()["results"][0]["status"] == "applied", reply.text


async def export_entries(http: httpx.AsyncClient, node: RunningNode) -> list[dict[str, Any]]:
    await node.node.audit.flushed()
    reply = await http.get("/v1/audit", params={"limit": 1000}, headers=bearer(node))
    return [e for e in reply.json()["entries"] if e["action"] == "export"]


async def seed(http: httpx.AsyncClient, node: RunningNode) -> None:
    await put(
        http, node, "c1", name="Kranbau Nord", budget="12000", intended_model="T-800", team="north"
    )
    await put(http, node, "c2", name='Quote "and", comma\nnewline', budget="0", team="south")
    await put(http, node, "c3", name="Gone GmbH", team="north")
    await put(http, node, "c4", name='=HYPERLINK("http://x")', address="@SUM(A1)", team="north")
    await delete(http, node, "c3")


async def test_ndjson_export_is_every_live_record_and_its_audit_entry_hashes_the_body(
    node: RunningNode,
) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        await seed(http, node)
        top = await node.node.backend.records.log_top()
        reply = await http.get("/v1/export/customer", headers=bearer(node))
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/x-ndjson"
        assert 'filename="customer.ndjson"' in reply.headers["content-disposition"]
        lines = [json.loads(line) for line in reply.text.splitlines()]
        assert [line["rid"] for line in lines] == ["c1", "c2", "c4"]  # c3 was deleted
        first = lines[0]
        assert first == {
            "type": "customer",
            "rid": "c1",
            "fields": {
                "name": "Kranbau Nord",
                "budget": 12000,
                "model_pref": "T-800",  # the phones' name (the mapping above)
                "team": "north",
            },
        }
        (entry,) = await export_entries(http, node)
    assert (entry["actor"], entry["role"], entry["target"], entry["outcome"]) == (
        "root",
        "admin",
        "customer",
        "ok",
    )
    fields = entry["fields"]
    assert fields["rows"] == [None, 3]
    assert fields["bytes"] == [None, len(reply.content)]
    assert fields["sha256"] == [None, hashlib.sha256(reply.content).hexdigest()]
    assert fields["format"] == [None, "ndjson"] and fields["side"] == [None, "phone"]
    assert fields["as_of"] == [None, top]


async def test_crm_side_export_uses_the_crms_names_and_values(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        await seed(http, node)
        reply = await http.get("/v1/export/customer?side=crm", headers=bearer(node))
        assert reply.status_code == 200, reply.text
        first = json.loads(reply.text.splitlines()[0])
        assert first["fields"]["budget"] == "12000"  # the CRM's convert = "string"
        assert first["fields"]["intended_model"] == "T-800"
        (entry,) = await export_entries(http, node)
    assert entry["fields"]["side"] == [None, "crm"]


async def test_csv_export_quotes_and_defuses_formulas(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        await seed(http, node)
        reply = await http.get("/v1/export/customer?format=csv", headers=bearer(node))
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.reader(io.StringIO(reply.content.decode(), newline="")))
        header, *records = rows
        schema_order = node.node.sync.schema.types["customer"].fields  # an admin reads all
        assert header == [
            "rid",
            *("model_pref" if n == "intended_model" else n for n in schema_order),
        ]
        by_rid = {row[0]: dict(zip(header, row, strict=True)) for row in records}
        assert list(by_rid) == ["c1", "c2", "c4"]
        assert by_rid["c1"]["budget"] == "12000" and by_rid["c1"]["level"] == ""
        assert by_rid["c2"]["name"] == 'Quote "and", comma\nnewline'
        assert by_rid["c4"]["name"] == '\'=HYPERLINK("http://x")'
        assert by_rid["c4"]["address"] == "'@SUM(A1)"
        (entry,) = await export_entries(http, node)
    assert entry["fields"]["rows"] == [None, 3]
    assert entry["fields"]["sha256"] == [None, hashlib.sha256(reply.content).hexdigest()]


async def test_an_export_of_many_pages_streams_every_record_in_id_order(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fieldpush.sync.export, "PAGE", 3)
    async with httpx.AsyncClient(base_url=node.url) as http:
        rids = [f"c{n:03}" for n in range(20)]
        for rid in reversed(rids):
            await put(http, node, rid, name=f"Customer {rid}", team="north")
        async with http.stream("GET", "/v1/export/customer", headers=bearer(node)) as reply:
            body = b"".join([chunk async for chunk in reply.aiter_raw()])
        assert [json.loads(line)["rid"] for line in body.splitlines()] == rids
        (entry,) = await export_entries(http, node)
    assert entry["fields"]["rows"] == [None, 20]


@pytest.mark.parametrize("role", ["sales", "supervisor", "dispatcher", "service", "after_sales"])
async def test_only_admins_export_and_refusals_are_audited(node: RunningNode, role: str) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        await seed(http, node)
        reply = await http.get("/v1/export/customer", headers=bearer(node, role, "mallory"))
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "forbidden"
        assert (await http.get("/v1/export/customer")).status_code == 401
        (entry,) = await export_entries(http, node)
    assert (entry["actor"], entry["role"], entry["outcome"]) == (
        "mallory",
        role,
        "refused:forbidden",
    )


@pytest.mark.parametrize(
    "query",
    ["format=xml", "side=erp", "format=csv&format=ndjson", "limit=5", "format=%00", "side="],
)
async def test_hostile_queries_are_422_and_export_nothing(node: RunningNode, query: str) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        await seed(http, node)
        reply = await http.get(f"/v1/export/customer?{query}", headers=bearer(node))
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"]["code"] == "invalid"
        assert await export_entries(http, node) == []


@pytest.mark.parametrize("name", ["nosuch", "customer%00", "c" * 5000, "%E2%80%AE"])
async def test_unknown_types_are_404_and_audited(node: RunningNode, name: str) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        reply = await http.get(f"/v1/export/{name}", headers=bearer(node))
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "not_found"
        (entry,) = await export_entries(http, node)
    assert entry["outcome"] == "refused:not_found"
    assert entry["target"] in (name, "?")


async def test_an_export_is_refused_before_it_starts_when_the_trail_is_backlogged(
    redis_server: RedisServer,
) -> None:
    redis_server.flush()
    async with proxy_to(("127.0.0.1", redis_server.port)) as link:
        settings = node_settings(redis_url=f"redis://127.0.0.1:{link.port}/0", audit_max_pending=2)
        async with running_node(settings) as node, httpx.AsyncClient(base_url=node.url) as http:
            link.cut()  # the trail cannot be stored now: refusals pile up
            for _ in range(2):
                sales = bearer(node, "sales", "mallory")
                assert (await http.get("/v1/export/customer", headers=sales)).status_code == 403
            reply = await http.get("/v1/export/customer", headers=bearer(node))
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"]["code"] == "unavailable"
            link.restore()
            await eventually(lambda: node.node.audit.pending == 0, message="trail stored")
            reply = await http.get("/v1/export/customer", headers=bearer(node))
            assert reply.status_code == 200, reply.text
            entries = await export_entries(http, node)
    assert [e["outcome"] for e in entries] == ["refused:forbidden"] * 2 + ["ok"]


# --------------------------------------------------------- how the stream ends


async def _pages(fail_after: int | None) -> AsyncGenerator[tuple[bytes, int], None]:
    for n in range(5):
        if fail_after is not None and n == fail_after:
            raise BackendUnavailable("redis went away")
        yield f"row {n}\n".encode(), 1


async def _run(stream: ExportStream, refuse_after: int | None = None) -> list[bytes]:
    sent: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if refuse_after is not None and len(sent) == refuse_after:
                raise OSError("client went away")
            sent.append(message["body"])

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError("unreachable")

    await stream({"type": "http"}, receive, send)
    return sent


async def test_the_audit_record_says_what_was_sent_when_the_client_goes_away() -> None:
    ends: list[tuple[str, int, int, str]] = []
    stream = ExportStream(_pages(None), "text/plain", "x", lambda *end: ends.append(end))
    await _run(stream, refuse_after=2)  # a normal end for the server: no error to log
    sent = b"row 0\nrow 1\n"
    assert ends == [("aborted", 2, len(sent), hashlib.sha256(sent).hexdigest())]


async def test_a_backend_failure_midway_is_recorded_and_the_response_left_incomplete() -> None:
    ends: list[tuple[str, int, int, str]] = []
    stream = ExportStream(_pages(3), "text/plain", "x", lambda *end: ends.append(end))
    with pytest.raises(BackendUnavailable):
        await _run(stream)  # raising from the app: no final chunk, the client sees it cut
    sent = b"row 0\nrow 1\nrow 2\n"
    assert ends == [("failed:unavailable", 3, len(sent), hashlib.sha256(sent).hexdigest())]


async def test_a_whole_stream_ends_ok_once() -> None:
    ends: list[tuple[str, int, int, str]] = []
    stream = ExportStream(_pages(None), "text/plain", "x", lambda *end: ends.append(end))
    sent = await _run(stream)
    assert sent[-1] == b"" and len(ends) == 1 and ends[0][:2] == ("ok", 5)


async def test_a_client_that_hangs_up_midway_is_recorded_as_aborted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a real socket: an export larger than the server's socket buffer,
    to a client with a tiny receive buffer that reads a little and closes;
    the entry says ``aborted`` with the rows sent until then."""
    monkeypatch.setattr(fieldpush.sync.export, "PAGE", 50)
    total = 16_000  # about 8 MB: more than the kernel buffers a stalled reader
    async with running_node() as node, httpx.AsyncClient(base_url=node.url, timeout=60) as http:
        crm = bearer(node, "service")
        for start in range(0, total, 500):
            mutations = [
                {"mid": f"m{n}", "type": "customer", "rid": f"c{n:05}", "hlc": [0, 0],
                 "fields": {"name": f"Customer {n}", "address": "x" * 480}}
                for n in range(start, start + 500)
            ]  # fmt: skip
            reply = await http.post("/v1/sync/push", json={"mutations": mutations}, headers=crm)
            assert reply.status_code == 200, reply.text
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = node.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(sock=_connected(client, host, int(port)))
        token = bearer(node)["Authorization"]
        head = f"GET /v1/export/customer HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\r\n"
        writer.write(head.encode())
        await reader.readexactly(4096)  # the head and the first rows, then hang up
        writer.transport.abort()

        async def exported() -> list[Any]:
            await node.node.audit.flushed()
            return [e for e in await node.node.backend.audit.read(1, 10**6) if e.action == "export"]

        (entry,) = await eventually(exported, message="the export's entry is written", timeout=20)
    assert entry.outcome == "aborted"
    assert 0 < entry.fields["rows"][1] < total


def _connected(sock: socket.socket, host: str, port: int) -> socket.socket:
    sock.connect((host, port))
    sock.setblocking(False)
    return sock
