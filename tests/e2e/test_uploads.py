"""Black-box: a tus upload with the real ``tuspy`` client to two ``fieldpush
serve`` processes on one redis-server and one ``files_dir``. The first node
is killed (SIGKILL) after the first chunk; the upload resumes on the second
from its ``HEAD`` offset and ends stored once under its SHA-256."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from pathlib import Path

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.uploader import Uploader

from tests.support.cluster import start_node, token
from tests.support.timing import scaled

pytestmark = pytest.mark.e2e

CHUNK = 256 * 1024


class Sha256Uploader(Uploader):  # type: ignore[misc]
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


def upload(base: str, user_token: str, data: bytes, url: str | None, stop_at: int | None) -> str:
    client = TusClient(f"{base}/v1/files/", headers={"Authorization": f"Bearer {user_token}"})
    uploader = Sha256Uploader(
        client=client, file_stream=io.BytesIO(data), url=url, chunk_size=CHUNK, upload_checksum=True
    )
    uploader.upload(stop_at=stop_at)
    assert isinstance(uploader.url, str)
    return uploader.url


async def test_an_upload_survives_its_node_being_killed(redis_url: str, tmp_path: Path) -> None:
    files = tmp_path / "files"
    data = os.urandom(3 * CHUNK + 999)
    alice = token("alice")
    a = start_node(redis_url, "node-a", files_dir=str(files))
    b = start_node(redis_url, "node-b", files_dir=str(files))
    try:
        url = await asyncio.to_thread(upload, a.url, alice, data, None, CHUNK)
        path = url.removeprefix(a.url)
        a.kill()
        await asyncio.to_thread(upload, b.url, alice, data, b.url + path, None)
        async with httpx.AsyncClient(base_url=b.url, timeout=scaled(10)) as http:
            head = await http.head(
                path, headers={"Authorization": f"Bearer {alice}", "Tus-Resumable": "1.0.0"}
            )
        assert head.headers["upload-offset"] == str(len(data))
        digest = hashlib.sha256(data).hexdigest()
        assert (files / "sha256" / digest[:2] / digest[2:4] / digest).read_bytes() == data
    finally:
        a.kill()
        assert b.stop() == 0
