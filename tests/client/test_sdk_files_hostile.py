"""The SDK's tus client and attachments against a hostile server: a real
HTTP server on a real socket that answers wrong offsets, garbage headers,
bytes that do not match their sha256, 413 / 460 / 410 / 5xx. Each time the
job fails (or pauses) with a clear error after a bounded number of
requests, and no bad byte is stored. Also the pure header building and
reading of fieldpush_client.tus."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.errors import FileTransferError
from fieldpush_client.files import Attachments
from fieldpush_client.tus import creation_headers, patch_headers, read_location, read_offset
from tests.support.stores import STORE_KEY

DATA = b"\xff\xd8\xff" + b"hostile-" * 4000
CHUNK = 8 * 1024
#: (status, headers, body) for one request.
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Hostile:
    """An HTTP/1.1 server on port 0 whose every answer ``answer(method, headers)`` chooses."""

    answer: Callable[[str, dict[str, str]], Answer]
    requests: list[str] = field(default_factory=list)
    #: The ``Range`` header of every GET (None: none sent).
    ranges: list[str | None] = field(default_factory=list)
    #: Send only this many bytes of the next GET's body, then close the connection.
    cut_get_at: int | None = None
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ")[0]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(method)
                status, extra, body = self.answer(method, headers)
                out = {"Content-Length": str(len(body)), "Tus-Resumable": "1.0.0", **extra}
                cut, sent = None, body
                if method == "GET":
                    self.ranges.append(headers.get("range"))
                    cut, self.cut_get_at = self.cut_get_at, None
                    sent = body if cut is None else body[:cut]
                writer.write(
                    f"HTTP/1.1 {status} X\r\n".encode()
                    + "".join(f"{k}: {v}\r\n" for k, v in out.items()).encode()
                    + b"\r\n"
                    + (b"" if method == "HEAD" else sent)
                )
                await writer.drain()
                if cut is not None:
                    return  # the signal drops mid-body
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def listening(hostile: Hostile) -> asyncio.Server:
    server = await asyncio.start_server(hostile.serve, "127.0.0.1", 0)
    hostile.port = server.sockets[0].getsockname()[1]
    return server


def files_for(hostile: Hostile, tmp_path: Path) -> Attachments:
    client = PushClient(
        "ws://127.0.0.1:9/v1/ws", token="t", device="d", http_url=f"http://127.0.0.1:{hostile.port}"
    )
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    sync = SyncClient(client, store, auto=False)
    return Attachments(sync, chunk_size=CHUNK, max_attempts=3, retry_base_s=0.001, retry_cap_s=0.01)


def created(_: str, __: dict[str, str]) -> Answer:
    return 201, {"Location": "/v1/files/up1", "Upload-Offset": "0"}, b""


def script(
    patch: Callable[[dict[str, str]], Answer], head_offset: str = "0"
) -> Callable[[str, dict[str, str]], Answer]:
    def answer(method: str, headers: dict[str, str]) -> Answer:
        if method == "POST":
            return created(method, headers)
        if method == "HEAD":
            return 200, {"Upload-Offset": head_offset, "Upload-Length": str(len(DATA))}, b""
        return patch(headers)

    return answer


def advance_by(extra: int) -> Callable[[dict[str, str]], Answer]:
    """A PATCH answer that claims ``extra`` bytes more than were sent."""

    def patch(headers: dict[str, str]) -> Answer:
        sent = int(headers["content-length"]) + int(headers["upload-offset"])
        return 204, {"Upload-Offset": str(sent + extra)}, b""

    return patch


async def upload_once(hostile: Hostile, tmp_path: Path) -> tuple[Attachments, str]:
    server = await listening(hostile)
    try:
        files = files_for(hostile, tmp_path)
        handle = files.attach("follow_up", "f-1", "photos", DATA, name="a.jpg")
        await asyncio.wait_for(files.upload(), 30)
        return files, handle.id
    finally:
        server.close()


def only(files: Attachments) -> tuple[str, str | None, str | None]:
    [handle] = files.attachments()
    return handle.state, handle.error_reason, handle.error


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        (advance_by(7), "took bytes"),
        (advance_by(-3), "took bytes"),
        (lambda h: (204, {"Upload-Offset": "12abc"}, b""), "no usable Upload-Offset"),
        (lambda h: (204, {}, b""), "no usable Upload-Offset"),
        (lambda h: (204, {"Upload-Offset": "9" * 30}, b""), "no usable Upload-Offset"),
        (lambda h: (204, {"Upload-Offset": str(10 * len(DATA))}, b""), "arrived of an upload"),
    ],
    ids=["ahead", "behind", "garbage", "missing", "huge", "past-the-end"],
)
async def test_a_wrong_offset_fails_the_job_at_once(
    tmp_path: Path, patch: Callable[[dict[str, str]], Answer], why: str
) -> None:
    hostile = Hostile(script(patch))
    files, _ = await upload_once(hostile, tmp_path)
    state, reason, error = only(files)
    assert (state, reason) == ("failed", "protocol")
    assert why in (error or "")
    assert hostile.requests == ["POST", "PATCH"]
    assert files.sync.store.queued() == []  # no reference to a broken upload


async def test_a_head_beyond_the_length_fails_the_job(tmp_path: Path) -> None:
    def patch(_: dict[str, str]) -> Answer:
        return 503, {}, b""

    hostile = Hostile(script(patch, head_offset=str(len(DATA) + 1)))
    files, _ = await upload_once(hostile, tmp_path)
    assert only(files)[:2] == ("failed", "protocol")
    assert hostile.requests == ["POST", "PATCH", "HEAD"]


async def test_413_at_creation_fails_the_job_with_one_request(tmp_path: Path) -> None:
    hostile = Hostile(
        lambda m, h: (413, {}, b'{"error": {"code": "too_large", "message": "quota"}}')
    )
    files, _ = await upload_once(hostile, tmp_path)
    state, reason, error = only(files)
    assert (state, reason) == ("failed", "too_large") and "quota" in (error or "")
    assert hostile.requests == ["POST"]


async def test_460_again_and_again_fails_after_max_attempts(tmp_path: Path) -> None:
    hostile = Hostile(script(lambda h: (460, {}, b"")))
    files, _ = await upload_once(hostile, tmp_path)
    assert only(files)[:2] == ("failed", "checksum")
    assert hostile.requests.count("PATCH") == 3


async def test_410_restarts_the_upload_twice_then_fails(tmp_path: Path) -> None:
    hostile = Hostile(script(lambda h: (410, {}, b"")))
    files, _ = await upload_once(hostile, tmp_path)
    assert only(files)[:2] == ("failed", "gone")
    assert hostile.requests.count("POST") == 3 and len(hostile.requests) == 6


async def test_a_failing_server_pauses_the_job_for_the_next_batch(tmp_path: Path) -> None:
    hostile = Hostile(script(lambda h: (500, {}, b"")))
    files, _ = await upload_once(hostile, tmp_path)
    state, reason, _ = only(files)
    assert (state, reason) == ("queued", "server")  # tried again at the next batch
    assert len(hostile.requests) <= 1 + 2 * 3


async def test_a_location_elsewhere_fails_the_job(tmp_path: Path) -> None:
    hostile = Hostile(
        lambda m, h: (
            201,
            {"Location": "http://evil.example/v1/files/x", "Upload-Offset": "0"},
            b"",
        )
    )
    files, _ = await upload_once(hostile, tmp_path)
    assert only(files)[:2] == ("failed", "protocol")


def download_answer(body: bytes) -> Callable[[str, dict[str, str]], Answer]:
    return lambda m, h: (200, {"ETag": '"x"'}, body)


@pytest.mark.parametrize(
    "body",
    [DATA[:-1] + b"!", DATA[:100], DATA + b"more"],
    ids=["changed-byte", "short", "long"],
)
async def test_a_download_that_does_not_match_its_sha256_raises_and_stores_nothing(
    tmp_path: Path, body: bytes
) -> None:
    hostile = Hostile(download_answer(body))
    server = await listening(hostile)
    try:
        files = files_for(hostile, tmp_path)
        sha = hashlib.sha256(DATA).hexdigest()
        value = {
            "id": "up1",
            "sha256": sha,
            "size": len(DATA),
            "content_type": "image/jpeg",
            "name": "a",
        }
        with pytest.raises(FileTransferError) as caught:
            await files.open_file(value)
        assert caught.value.reason == "integrity"
        assert files._files.cached(sha) is None
        assert files._files.kept(sha) == 0  # nothing of it kept to resume from
    finally:
        server.close()


VALUE = {
    "id": "up1",
    "sha256": hashlib.sha256(DATA).hexdigest(),
    "size": len(DATA),
    "content_type": "image/jpeg",
    "name": "a",
}


def ranged(served: bytes) -> Callable[[str, dict[str, str]], Answer]:
    """GET answers from ``served``: 200 whole, or 206 from a ``Range: bytes=a-`` start."""

    def answer(_: str, headers: dict[str, str]) -> Answer:
        if "range" not in headers:
            return 200, {"ETag": '"x"'}, served
        start = int(headers["range"].removeprefix("bytes=").removesuffix("-"))
        content_range = f"bytes {start}-{len(served) - 1}/{len(served)}"
        return 206, {"ETag": '"x"', "Content-Range": content_range}, served[start:]

    return answer


async def test_a_download_cut_midway_resumes_after_an_app_restart_from_the_bytes_kept(
    tmp_path: Path,
) -> None:
    hostile = Hostile(ranged(DATA), cut_get_at=len(DATA) * 4 // 5)  # cut at 80 %
    server = await listening(hostile)
    try:
        first = files_for(hostile, tmp_path)
        first.max_attempts = 1
        with pytest.raises(FileTransferError) as caught:
            await first.open_file(VALUE)
        assert caught.value.reason == "network"
        kept = first._files.kept(VALUE["sha256"])  # type: ignore[arg-type]
        assert kept > len(DATA) // 2, "the bytes that arrived are kept"
        assert first._files.cached(VALUE["sha256"]) is None  # type: ignore[arg-type]
        first.sync.store.close()

        restarted = files_for(hostile, tmp_path)  # a new app run on the same store
        assert await restarted.open_file(VALUE) == DATA
        assert hostile.ranges == [None, f"bytes={kept}-"]
        assert restarted._files.kept(VALUE["sha256"]) == 0  # moved into the cache
    finally:
        server.close()


async def test_kept_bytes_that_do_not_add_up_to_the_sha256_are_dropped_and_fetched_again(
    tmp_path: Path,
) -> None:
    wrong_start = b"\x00" * 1000 + DATA[1000:]
    hostile = Hostile(ranged(wrong_start), cut_get_at=len(DATA) // 2)
    server = await listening(hostile)
    try:
        files = files_for(hostile, tmp_path)
        with pytest.raises(FileTransferError) as caught:
            await files.open_file(VALUE)  # resumed within the call, then checked: wrong
        assert caught.value.reason == "integrity"
        assert files._files.kept(VALUE["sha256"]) == 0  # type: ignore[arg-type]
        hostile.answer = ranged(DATA)
        assert await files.open_file(VALUE) == DATA
        assert hostile.ranges[-1] is None  # from byte 0, not from the dropped bytes
    finally:
        server.close()


async def test_save_file_writes_the_path_only_when_the_bytes_match(tmp_path: Path) -> None:
    hostile = Hostile(ranged(DATA[:-1] + b"!"))
    server = await listening(hostile)
    try:
        files = files_for(hostile, tmp_path)
        target = tmp_path / "out" / "pump.jpg"
        target.parent.mkdir()
        with pytest.raises(FileTransferError):
            await files.save_file(VALUE, target)
        assert list(target.parent.iterdir()) == []  # no file, no temporary left behind
        hostile.answer = ranged(DATA)
        assert await files.save_file(VALUE, target) == target
        assert target.read_bytes() == DATA
        assert [p.name for p in target.parent.iterdir()] == ["pump.jpg"]
    finally:
        server.close()


async def test_not_a_file_value_is_a_value_error(tmp_path: Path) -> None:
    hostile = Hostile(download_answer(DATA))
    files = files_for(hostile, tmp_path)
    for value in (
        {"id": "../x", "sha256": "0" * 64, "size": 1},
        {"id": "a", "sha256": "X", "size": 1},
        {"id": "a", "sha256": "0" * 64, "size": -1},
    ):
        with pytest.raises(ValueError, match="not a file value"):
            await files.open_file(value)
    assert hostile.requests == []


# ---------------------------------------------------------------- pure headers


def test_creation_headers_carry_the_length_and_the_metadata() -> None:
    headers = creation_headers(10, "pump.jpg", "image/jpeg")
    assert headers["Upload-Length"] == "10" and headers["Tus-Resumable"] == "1.0.0"
    pairs = dict(pair.split(" ") for pair in headers["Upload-Metadata"].split(","))
    assert base64.b64decode(pairs["filename"]) == b"pump.jpg"
    assert base64.b64decode(pairs["filetype"]) == b"image/jpeg"
    assert "Upload-Metadata" not in creation_headers(0, None, None)


def test_patch_headers_carry_the_chunks_sha256() -> None:
    headers = patch_headers(5, b"abc")
    assert headers["Upload-Offset"] == "5"
    assert headers["Content-Type"] == "application/offset+octet-stream"
    digest = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    assert headers["Upload-Checksum"] == f"sha256 {digest}"


@pytest.mark.parametrize("raw", ["", "-1", "+3", " 3", "3.0", "0x10", "1" * 19, "11"])
def test_read_offset_refuses_what_is_not_a_possible_offset(raw: str) -> None:
    with pytest.raises(FileTransferError) as caught:
        read_offset(httpx.Headers({"Upload-Offset": raw}), length=10)
    assert caught.value.reason == "protocol"


@pytest.mark.parametrize(
    "location",
    [
        "",
        "/v1/files/",
        "/v1/other/abc",
        "/v1/files/a b",
        "https://evil/v1/files/abc",
        "/v1/files/../x",
    ],
)
def test_read_location_refuses_what_is_not_an_upload_of_this_server(location: str) -> None:
    with pytest.raises(FileTransferError):
        read_location(httpx.Headers({"Location": location}), "http://node:1")


def test_read_location_takes_relative_and_same_server_locations() -> None:
    assert read_location(httpx.Headers({"Location": "/v1/files/ab_1"}), "http://n:1") == "ab_1"
    assert read_location(httpx.Headers({"Location": "http://n:1/v1/files/c"}), "http://n:1") == "c"
