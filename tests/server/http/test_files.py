"""tus 1.0.0 at ``/v1/files/`` (issue 14, items 1, 2 and the upload half of 6),
through an in-process node on a real socket: the real ``tuspy`` client (in a
thread), raw sockets that cut a PATCH mid-chunk, hostile headers, limits,
expiry, termination, another user's uploads, and two nodes on one directory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from tests.conftest import NodeFactory
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.raw import raw
from tests.support.scrape import value
from tests.support.timing import eventually, scaled

KIB = 1024
CHUNK = 256 * KIB


class Sha256Uploader(Uploader):  # type: ignore[misc]
    """tuspy's uploader with the checksum fieldpush offers (tuspy's default is sha1)."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def tus_upload(
    node: RunningNode,
    token: str,
    data: bytes,
    *,
    url: str | None = None,
    stop_at: int | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Upload ``data`` with tuspy (blocking: run it in a thread), resuming at
    ``url`` when given; the upload's URL."""
    client = TusClient(f"{node.url}/v1/files/", headers={"Authorization": f"Bearer {token}"})
    uploader = Sha256Uploader(
        client=client,
        file_stream=io.BytesIO(data),
        url=url,
        chunk_size=CHUNK,
        metadata=metadata or {},
        upload_checksum=True,
    )
    uploader.upload(stop_at=stop_at)
    url = uploader.url
    assert isinstance(url, str)
    return url


def tus(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **headers}


def stored(files: Path) -> list[Path]:
    """Every file under the store's content-addressed directory."""
    return sorted(p for p in (files / "sha256").rglob("*") if p.is_file())


def parts(files: Path) -> list[Path]:
    """Every unfinished upload's bytes."""
    return sorted((files / "uploads").glob("*/*.part"))


def dir_modes(files: Path) -> set[int]:
    """The permission bits of every directory under ``files``, itself included."""
    return {p.stat().st_mode & 0o777 for p in [files, *files.rglob("*")] if p.is_dir()}


def upload_infos(files: Path) -> list[Path]:
    return sorted((files / "uploads").glob("*/*.json"))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
async def node(files: Path) -> AsyncIterator[RunningNode]:
    settings = node_settings(
        files_dir=str(files), files_max_bytes=4 * 1024 * KIB, files_quota_bytes=6 * 1024 * KIB
    )
    async with running_node(settings) as running:
        yield running


async def create(
    http: httpx.AsyncClient, token: str, length: int, **headers: str
) -> httpx.Response:
    return await http.post(
        "/v1/files/", headers=tus(token, **{"Upload-Length": str(length)}, **headers)
    )


async def created(http: httpx.AsyncClient, token: str, length: int) -> str:
    reply = await create(http, token, length)
    assert reply.status_code == 201, reply.text
    return reply.headers["location"]


async def patch(
    http: httpx.AsyncClient, token: str, url: str, offset: int, body: Any, **headers: str
) -> httpx.Response:
    headers = {
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        **headers,
    }
    return await http.patch(url, content=body, headers=tus(token, **headers))


def checksum(data: bytes) -> str:
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()


async def offset_of(http: httpx.AsyncClient, token: str, url: str) -> int:
    reply = await http.head(url, headers=tus(token))
    assert reply.status_code == 200, reply.status_code
    assert reply.headers["tus-resumable"] == "1.0.0"
    return int(reply.headers["upload-offset"])


def part_of(files: Path, url: str) -> Path:
    upload_id = url.rsplit("/", 1)[1]
    return files / "uploads" / upload_id[:16] / f"{upload_id}.part"


async def cut_patch(
    node: RunningNode, files: Path, url: str, offset: int, data: bytes, **headers: str
) -> None:
    """A PATCH announcing one byte more than ``data`` that sends ``data`` and closes
    once the node has written some of it past ``offset`` (so the cut lands
    inside the chunk, at a byte the scheduler picks)."""
    token = headers.pop("token")
    async with raw(node) as (_, writer):
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"PATCH {url} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n{extra}"
            f"Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data) + 1}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()
        await eventually(
            lambda: part_of(files, url).stat().st_size > offset,
            message="the node wrote part of the chunk",
        )


# ------------------------------------------------------------------ the tus client


async def test_options_advertises_version_extensions_and_limits(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    reply = await http.options("/v1/files/", headers=tus(node.token("alice")))
    assert reply.status_code == 204
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert reply.headers["tus-version"] == "1.0.0"
    assert set(reply.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    }
    assert reply.headers["tus-max-size"] == str(4 * 1024 * KIB)
    assert reply.headers["tus-checksum-algorithm"] == "sha256"


async def test_tuspy_uploads_a_file_stored_by_its_sha256(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    data = os.urandom(700 * KIB)
    token = node.token("alice")
    metadata = {"filename": "pump.jpg", "filetype": "image/jpeg"}
    url = await asyncio.to_thread(tus_upload, node, token, data, metadata=metadata)
    reply = await http.head(url, headers=tus(token))
    assert reply.status_code == 200
    assert reply.headers["upload-offset"] == reply.headers["upload-length"] == str(len(data))
    assert "upload-expires" not in reply.headers  # complete: it no longer expires
    assert reply.headers["cache-control"] == "no-store"
    digest = hashlib.sha256(data).hexdigest()
    assert stored(files) == [files / "sha256" / digest[:2] / digest[2:4] / digest]
    assert stored(files)[0].read_bytes() == data
    assert b"".join([c async for c in node.node.files.read(digest)]) == data
    sent = dict(pair.split(" ") for pair in reply.headers["upload-metadata"].split(","))
    assert {k: base64.b64decode(v).decode() for k, v in sent.items()} == metadata
    assert not parts(files)  # moved, not copied
    assert dir_modes(files) == {0o700}
    assert node.node.metrics.files_uploads_completed == 1
    assert node.node.metrics.files_bytes_received == len(data)
    scrape = (await http.get("/metrics")).text
    assert value(scrape, "fieldpush_files_bytes_received_total") == len(data)


async def test_an_upload_cut_mid_patch_resumes_from_what_is_on_disk(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    data = os.urandom(3 * CHUNK + 1000)
    token = node.token("alice")
    url = await asyncio.to_thread(tus_upload, node, token, data, stop_at=CHUNK)
    path = url.removeprefix(node.url)
    await cut_patch(node, files, path, CHUNK, data[CHUNK : 2 * CHUNK], token=token)
    cut_at = await eventually(
        lambda: offset_of(http, token, path),
        until=lambda offset: offset > CHUNK and offset == part_of(files, path).stat().st_size,
        message="HEAD gives the offset of the bytes on disk after the cut",
    )
    assert CHUNK < cut_at <= 2 * CHUNK
    await asyncio.to_thread(tus_upload, node, token, data, url=url)  # tuspy resumes by HEAD
    assert await offset_of(http, token, path) == len(data)
    assert [p.read_bytes() for p in stored(files)] == [data]


async def test_a_cut_chunk_with_a_checksum_keeps_nothing(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    data = os.urandom(CHUNK)
    url = await created(http, token, 2 * CHUNK)
    whole = {"Upload-Checksum": checksum(data + data)}
    await cut_patch(node, files, url, 0, data, token=token, **whole)
    # The chunk cannot be verified, so nothing of it counts: a whole chunk at
    # offset 0 is taken once the cut one's handler let go (423 until then).
    reply = await eventually(
        lambda: patch(http, token, url, 0, data + data, **whole),
        until=lambda reply: reply.status_code != 423,
        message="the cut PATCH's handler let go of the upload",
    )
    assert reply.status_code == 204, reply.text
    assert reply.headers["upload-offset"] == str(2 * CHUNK)
    assert node.node.metrics.files_bytes_received == 2 * CHUNK


async def test_a_checksum_mismatch_is_460_and_nothing_of_the_chunk_is_kept(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    url = await created(http, token, 8000)
    first = os.urandom(4000)
    ok = await patch(http, token, url, 0, first, **{"Upload-Checksum": checksum(first)})
    assert ok.status_code == 204
    second = os.urandom(4000)
    reply = await patch(http, token, url, 4000, second, **{"Upload-Checksum": checksum(first)})
    assert reply.status_code == 460
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert await offset_of(http, token, url) == 4000
    (part,) = parts(files)
    assert part.read_bytes() == first
    assert node.node.metrics.files_checksum_failures == 1
    again = await patch(http, token, url, 4000, second, **{"Upload-Checksum": checksum(second)})
    assert again.status_code == 204
    assert [p.read_bytes() for p in stored(files)] == [first + second]
    bad = await patch(http, token, url, 0, b"x", **{"Upload-Checksum": "sha1 " + "A" * 28})
    assert bad.status_code in (400, 403)


async def test_creation_with_upload_takes_the_first_chunk_in_the_post(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    data = os.urandom(3000)
    reply = await create(http, token, 5000, **{"Content-Type": "application/offset+octet-stream"})
    assert reply.status_code == 201 and "upload-offset" in reply.headers
    posted = await http.post(
        "/v1/files/",
        content=data,
        headers=tus(
            token,
            **{"Upload-Length": "5000", "Content-Type": "application/offset+octet-stream"},
        ),
    )
    assert posted.status_code == 201
    assert posted.headers["upload-offset"] == "3000"
    assert "upload-expires" in posted.headers
    url = posted.headers["location"]
    rest = os.urandom(2000)
    assert (await patch(http, token, url, 3000, rest)).status_code == 204
    assert [p.read_bytes() for p in stored(files)] == [data + rest]


async def test_the_same_bytes_uploaded_twice_are_stored_once(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    data = os.urandom(300 * KIB)
    first = await asyncio.to_thread(tus_upload, node, node.token("alice"), data)
    second = await asyncio.to_thread(tus_upload, node, node.token("bob"), data)
    assert first != second
    assert [p.read_bytes() for p in stored(files)] == [data]
    assert await offset_of(http, node.token("bob"), second) == len(data)


# ------------------------------------------------------------------ limits


async def test_over_the_size_limit_is_413_before_any_byte(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    reply = await create(http, token, 4 * 1024 * KIB + 1)
    assert reply.status_code == 413
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert reply.json()["error"]["code"] == "too_large"
    with pytest.raises(TusCommunicationError):
        await asyncio.to_thread(tus_upload, node, token, os.urandom(4 * 1024 * KIB + 1))
    assert not upload_infos(files) and not stored(files)


async def test_the_quota_counts_unfinished_and_finished_uploads(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    await asyncio.to_thread(tus_upload, node, token, os.urandom(3 * 1024 * KIB))
    unfinished = await created(http, token, 2 * 1024 * KIB)
    over = await create(http, token, 1024 * KIB + 1)
    assert over.status_code == 413
    assert "quota" in over.json()["error"]["message"]
    assert (await create(http, node.token("bob"), 3 * 1024 * KIB)).status_code == 201
    assert len(upload_infos(files)) == 3
    assert (await http.delete(unfinished, headers=tus(token))).status_code == 204
    assert (await create(http, token, 1024 * KIB + 1)).status_code == 201


async def test_a_body_beyond_upload_length_is_refused_without_writing_past_it(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    url = await created(http, token, 1000)
    declared = await patch(http, token, url, 0, os.urandom(1001))
    assert declared.status_code == 413

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        for _ in range(10):
            yield os.urandom(400)

    streamed = await patch(http, token, url, 0, endless())
    assert streamed.status_code == 413
    (part,) = parts(files)
    assert part.stat().st_size == 0
    assert await offset_of(http, token, url) == 0


# ------------------------------------------------------------------ states


async def test_patch_after_completion_is_403_and_changes_nothing(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    data = os.urandom(2000)
    url = await asyncio.to_thread(tus_upload, node, token, data)
    for offset in (2000, 0):
        reply = await patch(http, token, url, offset, b"more")
        assert reply.status_code == 403
    assert [p.read_bytes() for p in stored(files)] == [data]


async def test_a_patch_at_the_wrong_offset_is_409(
    node: RunningNode, http: httpx.AsyncClient
) -> None:
    token = node.token("alice")
    url = await created(http, token, 1000)
    assert (await patch(http, token, url, 0, b"a" * 100)).status_code == 204
    for offset in (0, 99, 101, 1000):
        reply = await patch(http, token, url, offset, b"b")
        assert reply.status_code == 409, offset
        assert "100" in reply.json()["error"]["message"]
    assert await offset_of(http, token, url) == 100


async def test_termination_removes_an_unfinished_upload(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    url = await created(http, token, 1000)
    assert (await patch(http, token, url, 0, b"a" * 500)).status_code == 204
    reply = await http.delete(url, headers=tus(token))
    assert reply.status_code == 204
    assert reply.headers["tus-resumable"] == "1.0.0"
    assert (await http.head(url, headers=tus(token))).status_code == 404
    assert (await patch(http, token, url, 500, b"a")).status_code == 404
    assert not parts(files)
    assert not upload_infos(files)


async def test_unfinished_uploads_expire_and_are_cleaned_up(files: Path) -> None:
    settings = node_settings(files_dir=str(files), files_upload_expiry_s=0.5, files_sweep_s=0.05)
    async with running_node(settings) as node, httpx.AsyncClient(base_url=node.url) as http:
        token = node.token("alice")
        url = await created(http, token, 1000)
        reply = await patch(http, token, url, 0, b"a" * 10)
        assert "upload-expires" in reply.headers
        done = await asyncio.to_thread(tus_upload, node, token, b"kept")
        await eventually(
            lambda: node.node.metrics.files_uploads_expired == 1,
            timeout=10,
            message="the sweeper removed the expired upload",
        )
        assert (await http.head(url, headers=tus(token))).status_code == 404
        assert len(upload_infos(files)) == 1 and not parts(files)
        assert await offset_of(http, token, done) == 4  # finished uploads never expire


# ------------------------------------------------------------------ who may


async def test_another_users_upload_is_404_like_none_at_all(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    alice, bob = node.token("alice"), node.token("bob")
    url = await created(http, alice, 1000)
    assert (await patch(http, alice, url, 0, b"a" * 10)).status_code == 204
    missing = url[:-4] + "0000" if not url.endswith("0000") else url[:-4] + "1111"
    for target in (url, missing):
        assert (await http.head(target, headers=tus(bob))).status_code == 404
        answers = [
            await patch(http, bob, target, 10, b"b"),
            await http.delete(target, headers=tus(bob)),
        ]
        assert [(r.status_code, r.json()) for r in answers] == [
            (404, {"error": {"code": "not_found", "message": "no such upload"}})
        ] * 2
    assert await offset_of(http, alice, url) == 10
    assert len(upload_infos(files)) == 1


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "HEAD", "PATCH", "DELETE"])
async def test_every_call_needs_a_token(
    node: RunningNode, http: httpx.AsyncClient, method: str
) -> None:
    url = await created(http, node.token("alice"), 10)
    target = "/v1/files/" if method in ("OPTIONS", "POST") else url
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Offset": "0"}
    reply = await http.request(method, target, headers=headers)
    assert reply.status_code == 401
    assert reply.headers["tus-resumable"] == "1.0.0"
    forged = {**headers, "Authorization": "Bearer " + node.token("alice")[:-3] + "abc"}
    assert (await http.request(method, target, headers=forged)).status_code == 401


# ------------------------------------------------------------------ hostile input


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upload-Length": "-1"}, 400),
        ({"Upload-Length": "abc"}, 400),
        ({"Upload-Length": "1e3"}, 400),
        ({"Upload-Length": "+10"}, 400),
        ({"Upload-Length": "0x10"}, 400),
        ({"Upload-Length": "9" * 40}, 400),
        ({"Upload-Length": "99999999999"}, 413),
        ({}, 400),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename !!!"}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("../../etc/passwd")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("a\\b")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("..")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("a\x00b")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("a\nb")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("x" * 256)}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filetype " + b64("<script>")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "a " + b64("1") + ",a " + b64("2")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "k v w"}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": ",".join(["k"] * 5000)}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("é")[:-1]}, 400),
        ({"Upload-Length": "10", "Tus-Resumable": "0.2.2"}, 412),
        ({"Upload-Length": "10", "Tus-Resumable": ""}, 412),
    ],
)
async def test_hostile_creation_headers_are_refused_and_store_nothing(
    node: RunningNode, http: httpx.AsyncClient, files: Path, headers: dict[str, str], status: int
) -> None:
    sent = {**tus(node.token("alice")), **headers}
    reply = await http.post("/v1/files/", headers=sent)
    assert reply.status_code == status, reply.text
    assert reply.headers["tus-resumable"] == "1.0.0"
    if status == 412:
        assert reply.headers["tus-version"] == "1.0.0"
    assert not upload_infos(files)


async def test_a_missing_tus_resumable_is_412(node: RunningNode, http: httpx.AsyncClient) -> None:
    token = node.token("alice")
    url = await created(http, token, 10)
    headers = {"Authorization": f"Bearer {token}", "Upload-Offset": "0"}
    for method in ("POST", "HEAD", "PATCH", "DELETE"):
        target = "/v1/files/" if method == "POST" else url
        reply = await http.request(method, target, headers={**headers, "Upload-Length": "10"})
        assert reply.status_code == 412, method
        assert reply.headers["tus-version"] == "1.0.0"
    assert await offset_of(http, token, url) == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upload-Offset": "-1"}, 400),
        ({"Upload-Offset": "abc"}, 400),
        ({"Upload-Offset": "9" * 40}, 400),
        ({"Upload-Offset": "999999999999"}, 409),
        ({"Upload-Offset": ""}, 400),
        ({"Content-Type": "application/octet-stream"}, 415),
        ({"Content-Type": ""}, 415),
        ({"Upload-Checksum": "sha256 not-base64!"}, 400),
        ({"Upload-Checksum": "sha256 " + b64("short")}, 400),
        ({"Upload-Checksum": "md5 " + b64("x" * 16)}, 400),
    ],
)
async def test_hostile_patch_headers_are_refused_and_change_nothing(
    node: RunningNode, http: httpx.AsyncClient, files: Path, headers: dict[str, str], status: int
) -> None:
    token = node.token("alice")
    url = await created(http, token, 100)
    assert (await patch(http, token, url, 0, b"a" * 10)).status_code == 204
    sent = {
        "Upload-Offset": "10",
        "Content-Type": "application/offset+octet-stream",
        **headers,
    }
    reply = await http.patch(url, content=b"b" * 10, headers=tus(token, **sent))
    assert reply.status_code == status, reply.text
    assert await offset_of(http, token, url) == 10
    (part,) = parts(files)
    assert part.read_bytes() == b"a" * 10


@pytest.mark.parametrize(
    "target",
    [
        "/v1/files/..%2f..%2fetc%2fpasswd",
        "/v1/files/%2e%2e",
        "/v1/files/" + "a" * 48,
        "/v1/files/x",
    ],
)
async def test_hostile_upload_ids_are_404(
    node: RunningNode, http: httpx.AsyncClient, target: str
) -> None:
    reply = await http.head(target, headers=tus(node.token("alice")))
    assert reply.status_code == 404


async def test_other_connections_carry_on_while_one_sends_garbage(
    node: RunningNode, http: httpx.AsyncClient, files: Path
) -> None:
    token = node.token("alice")
    data = os.urandom(600 * KIB)

    async def hostile() -> None:
        for length in ("-1", "x", "9" * 30):
            sent = tus(token, **{"Upload-Length": length})
            assert (await http.post("/v1/files/", headers=sent)).status_code == 400

    url, _ = await asyncio.gather(asyncio.to_thread(tus_upload, node, token, data), hostile())
    assert await offset_of(http, token, url) == len(data)


# ------------------------------------------------------------------ a cluster


async def test_an_upload_started_on_one_node_resumes_on_another(
    start_node: NodeFactory, files: Path
) -> None:
    data = os.urandom(2 * CHUNK + 5000)
    async with start_node(files_dir=str(files)) as a, start_node(files_dir=str(files)) as b:
        token = a.token("alice")
        url_a = await asyncio.to_thread(tus_upload, a, token, data, stop_at=CHUNK)
        path = url_a.removeprefix(a.url)
        await cut_patch(a, files, path, CHUNK, data[CHUNK : 2 * CHUNK], token=token)
        async with httpx.AsyncClient(base_url=b.url, timeout=scaled(10)) as http_b:
            cut_at = await eventually(
                lambda: offset_of(http_b, token, path),
                until=lambda offset: (
                    offset > CHUNK and offset == part_of(files, path).stat().st_size
                ),
                message="node B sees the offset node A wrote",
            )
            await asyncio.to_thread(tus_upload, b, token, data, url=b.url + path)
            assert await offset_of(http_b, token, path) == len(data)
        assert [p.read_bytes() for p in stored(files)] == [data]
        assert b.node.metrics.files_uploads_completed == 1
        assert b.node.metrics.files_bytes_received == len(data) - cut_at
