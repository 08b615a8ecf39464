"""``GET /v1/files/{id}`` and file references through a node on a real socket
(issue 14, items 3 and 6): an upload by tus, a follow-up referencing it by a
sync push, then downloads: whole, ranges, ETag / If-None-Match, who may read
(the uploader, readers of the record, nobody else: the same 404 as no file),
hostile ids, tokens and ranges, the audit entries, and a record that drops
the reference (the index is a superset; the record decides)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.node import RunningNode, node_settings, running_node

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # 10248 bytes
PDF = b"%PDF-1.7\n" + bytes(300)
KIB = 1024

_stamps = iter(range(1, 10**6))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
async def node(files: Path) -> AsyncIterator[RunningNode]:
    async with running_node(node_settings(files_dir=str(files))) as running:
        yield running


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


async def upload(http: httpx.AsyncClient, token: str, data: bytes, name: str = "pump.png") -> str:
    """A tus creation-with-upload of ``data``; the upload id."""
    reply = await http.post(
        "/v1/files/",
        content=data,
        headers=bearer(
            token,
            **{
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
            },
        ),
    )
    assert reply.status_code == 201, reply.text
    assert int(reply.headers["upload-offset"]) == len(data)
    return reply.headers["location"].rsplit("/", 1)[1]


def ref(upload_id: str, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
    return {
        "id": upload_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": content_type,
        "name": "pump.png",
    }


async def push(http: httpx.AsyncClient, token: str, rid: str, **fields: Any) -> dict[str, Any]:
    mutation = {
        "mid": f"m{next(_stamps)}",
        "type": "follow_up",
        "rid": rid,
        "fields": fields,
        "hlc": [time.time_ns() // 1_000_000, next(_stamps)],
    }
    reply = await http.post("/v1/sync/push", json={"mutations": [mutation]}, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()["results"][0]
    return result


async def attached(
    node: RunningNode, http: httpx.AsyncClient, data: bytes = PNG
) -> tuple[str, dict[str, Any]]:
    """Alice (sales, team north) uploads ``data`` and attaches it to her follow-up f1."""
    alice = node.token("alice", teams=("north",))
    upload_id = await upload(http, alice, data)
    created = await push(http, alice, "f1", customer="c1", photos=[ref(upload_id, data)])
    assert created["status"] == "applied", created
    return upload_id, ref(upload_id, data)


async def file_entries(node: RunningNode, http: httpx.AsyncClient) -> list[dict[str, Any]]:
    await node.node.audit.flushed()
    reply = await http.get(
        "/v1/audit", params={"limit": 1000}, headers=bearer(node.token("root", "admin"))
    )
    return [e for e in reply.json()["entries"] if e["action"] == "file.read"]


async def test_a_reader_of_the_record_downloads_the_file_whole(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    upload_id, _ = await attached(node, http)
    supervisor = node.token("sue", "supervisor", teams=("north",))
    reply = await http.get(f"/v1/files/{upload_id}", headers=bearer(supervisor))
    assert reply.status_code == 200
    assert reply.content == PNG
    digest = hashlib.sha256(PNG).hexdigest()
    assert reply.headers["etag"] == f'"{digest}"'
    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["content-length"] == str(len(PNG))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["cache-control"] == "private"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["content-disposition"] == "attachment; filename*=UTF-8''pump.png"
    (entry,) = await file_entries(node, http)
    assert entry["actor"] == "sue" and entry["target"] == f"file/{upload_id}"
    assert entry["outcome"] == "ok"
    assert entry["fields"]["via"] == [None, "follow_up/f1"]
    assert entry["fields"]["bytes"] == [None, len(PNG)]


async def test_ranges_are_206_with_content_range(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    upload_id, _ = await attached(node, http)
    alice = node.token("alice", teams=("north",))
    size = len(PNG)
    for header, first, last in [
        ("bytes=0-9", 0, 9),
        ("bytes=100-", 100, size - 1),
        ("bytes=-16", size - 16, size - 1),
        ("bytes=10000-999999", 10000, size - 1),
        ("bytes=-999999", 0, size - 1),
    ]:
        reply = await http.get(f"/v1/files/{upload_id}", headers=bearer(alice, Range=header))
        assert reply.status_code == 206, header
        assert reply.content == PNG[first : last + 1], header
        assert reply.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert reply.headers["content-length"] == str(last - first + 1)
    other_unit = await http.get(f"/v1/files/{upload_id}", headers=bearer(alice, Range="items=0-1"))
    assert other_unit.status_code == 200 and other_unit.content == PNG
    stale = bearer(alice, Range="bytes=0-9", **{"If-Range": '"not-it"'})
    assert (await http.get(f"/v1/files/{upload_id}", headers=stale)).content == PNG


@pytest.mark.parametrize(
    "header",
    [
        "bytes=999999999999999999999-",
        "bytes=5-2",
        "bytes=0-1,4-5",
        "bytes=abc",
        "bytes=-0",
        "bytes=-",
        "bytes=10248-",
        "bytes=\u0661-\u0662",
        "bytes= 1-2",
        "garbage",
    ],
)
async def test_a_bad_range_is_416_and_the_node_carries_on(
    node: RunningNode, http: httpx.AsyncClient, header: str
) -> None:
    upload_id, _ = await attached(node, http)
    alice = node.token("alice", teams=("north",))
    sent = {"Authorization": f"Bearer {alice}".encode(), "Range": header.encode()}
    reply = await http.get(f"/v1/files/{upload_id}", headers=sent)
    assert reply.status_code == 416, header
    assert reply.headers["content-range"] == f"bytes */{len(PNG)}"
    assert reply.json()["error"]["code"] == "bad_request"
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(alice))).content == PNG
    assert [e["outcome"] for e in await file_entries(node, http)] == ["refused:range", "ok"]


async def test_if_none_match_is_304(node: RunningNode, http: httpx.AsyncClient) -> None:
    upload_id, reference = await attached(node, http)
    alice = node.token("alice", teams=("north",))
    etag = f'"{reference["sha256"]}"'
    for condition in (etag, f'"x", W/{etag}', "*"):
        reply = await http.get(
            f"/v1/files/{upload_id}", headers=bearer(alice, **{"If-None-Match": condition})
        )
        assert reply.status_code == 304, condition
        assert reply.content == b"" and reply.headers["etag"] == etag
    other = await http.get(
        f"/v1/files/{upload_id}", headers=bearer(alice, **{"If-None-Match": '"x"'})
    )
    assert other.status_code == 200


async def test_no_existence_oracle_the_unreadable_and_the_absent_answer_alike(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    upload_id, _ = await attached(node, http)
    bob = node.token("bob", teams=("south",))  # sales, not his record
    answers = []
    for file_id in (upload_id, "0" * 48, upload_id[:-1] + "x", "%2e%2e", "a" * 4000):
        reply = await http.get(f"/v1/files/{file_id}", headers=bearer(bob))
        answers.append((reply.status_code, reply.content, sorted(reply.headers.items())))
    first = answers[0]
    assert first[0] == 404
    assert all(
        (status, body, [h for h in headers if h[0] != "date"])
        == (first[0], first[1], [h for h in first[2] if h[0] != "date"])
        for status, body, headers in answers
    )
    for path in ("/v1/files/../../etc/passwd", "/v1/files/..%2F..%2Fetc%2Fpasswd"):
        assert (await http.get(path, headers=bearer(bob))).status_code == 404
    entries = await file_entries(node, http)
    assert {e["outcome"] for e in entries} == {"refused:not_found"}
    assert entries[0]["target"] == f"file/{upload_id}"
    assert {e["target"] for e in entries[1:]} <= {"file/?", "file/" + "0" * 48}


async def test_the_uploader_downloads_an_unattached_upload_but_nobody_else(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    alice = node.token("alice", teams=("north",))
    upload_id = await upload(http, alice, PDF)
    reply = await http.get(f"/v1/files/{upload_id}", headers=bearer(alice))
    assert reply.status_code == 200 and reply.content == PDF
    admin = node.token("root", "admin")
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(admin))).status_code == 404


async def test_an_unfinished_upload_is_not_a_file_and_head_stays_tus(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    alice = node.token("alice", teams=("north",))
    reply = await http.post(
        "/v1/files/", headers=bearer(alice, **{"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    )
    upload_id = reply.headers["location"].rsplit("/", 1)[1]
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(alice))).status_code == 404
    head = await http.head(
        f"/v1/files/{upload_id}", headers=bearer(alice, **{"Tus-Resumable": "1.0.0"})
    )
    assert head.status_code == 200 and head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == "10"


async def test_a_forged_or_expired_token_is_401(node: RunningNode, http: httpx.AsyncClient) -> None:
    upload_id, _ = await attached(node, http)
    alice = node.token("alice", teams=("north",))
    for token in (alice[:-3] + "abc", node.token("alice", teams=("north",), ttl_s=-60), "x"):
        reply = await http.get(f"/v1/files/{upload_id}", headers=bearer(token))
        assert reply.status_code == 401
    assert (await http.get(f"/v1/files/{upload_id}")).status_code == 401


async def test_a_record_that_drops_the_reference_no_longer_grants_it(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    upload_id, reference = await attached(node, http)
    supervisor = node.token("sue", "supervisor", teams=("north",))
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(supervisor))).status_code == 200
    alice = node.token("alice", teams=("north",))
    dropped = await push(http, alice, "f1", photos={"remove": [reference]})
    assert dropped["status"] == "applied", dropped
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(supervisor))).status_code == 404
    assert (await http.get(f"/v1/files/{upload_id}", headers=bearer(alice))).status_code == 200


async def test_hostile_references_over_http_are_validation_and_store_nothing(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    alice = node.token("alice", teams=("north",))
    bob = node.token("bob", teams=("north",))
    bobs = await upload(http, bob, PNG)
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(100)
    lie = await upload(http, alice, elf)
    for value, message in [
        ([ref(bobs, PNG)], f"photos: no upload {bobs} of yours"),
        ([ref(lie, elf)], "photos: the file's content is not image/png"),
        ([ref(lie, elf, "application/pdf")], "photos[] must be one of image/jpeg"),
        ([{**ref(lie, elf), "name": "../../etc/passwd"}], "photos[].name must be a plain"),
    ]:
        result = await push(http, alice, "f2", customer="c1", photos=value)
        assert result["status"] == "rejected" and result["reason"] == "validation"
        assert result["message"].startswith(message), result["message"]
        assert await node.node.backend.records.file_records(value[0]["id"]) == []
    pulled = await http.post(
        "/v1/sync/pull", json={"classes": ["core", "batch"]}, headers=bearer(alice)
    )
    assert pulled.status_code == 200
    assert "f2" not in str(pulled.json())


async def test_two_nodes_on_one_redis_and_one_directory_serve_each_others_files(
    files: Path, redis_url: str
) -> None:
    settings = {"files_dir": str(files), "redis_url": redis_url}
    async with (
        running_node(node_settings(node_id="a", **settings)) as first,
        running_node(node_settings(node_id="b", **settings)) as second,
        httpx.AsyncClient(base_url=first.url) as on_first,
        httpx.AsyncClient(base_url=second.url) as on_second,
    ):
        upload_id, _ = await attached(first, on_first)
        supervisor = second.token("sue", "supervisor", teams=("north",))
        reply = await on_second.get(
            f"/v1/files/{upload_id}", headers=bearer(supervisor, Range="bytes=-8")
        )
        assert reply.status_code == 206 and reply.content == PNG[-8:]
        outsider = second.token("bob", teams=("south",))
        assert (
            await on_second.get(f"/v1/files/{upload_id}", headers=bearer(outsider))
        ).status_code == 404
