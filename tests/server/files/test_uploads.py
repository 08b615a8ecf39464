"""Uploads on a directory, without HTTP: the offset never ahead of the disk,
roll-back of refused chunks, the hash carried across nodes, quota under
concurrency, expiry by the clock, damaged info files, content addressing."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fieldpush.files.headers import Checksum, Metadata, TusError
from fieldpush.files.info import UploadInfo, decode, encode
from fieldpush.files.store import DirectoryStore
from fieldpush.files.uploads import Interrupted, Uploads
from fieldpush.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def uploads_on(root: Path, clock: Clock, **limits: int) -> Uploads:
    """An :class:`Uploads` as one node has it (two calls: two nodes)."""
    values = {"max_bytes": 10_000, "quota_bytes": 20_000, **limits}
    return Uploads(root, DirectoryStore(root), Metrics(), expiry_s=60, clock=clock, **values)


async def body(*pieces: bytes, cut: bool = False) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    if cut:
        raise Interrupted("cut")


def part(root: Path, info: UploadInfo) -> Path:
    return root / "uploads" / info.id[:16] / f"{info.id}.part"


async def test_the_sha256_is_carried_across_nodes_and_cuts(tmp_path: Path, clock: Clock) -> None:
    a, b = uploads_on(tmp_path, clock), uploads_on(tmp_path, clock)
    data = os.urandom(9000)
    info = await a.create("alice", len(data), Metadata(name="x.bin"))
    info = await a.append(info, 0, body(data[:3000]), None, 3000)
    with pytest.raises(Interrupted):
        await b.append(info, 3000, body(data[3000:5000], cut=True), None, None)
    info = await a.get(info.id, "alice")  # node A never saw the cut bytes' hash
    assert info.offset == 5000 == part(tmp_path, info).stat().st_size
    done = await a.append(info, 5000, body(data[5000:]), None, None)
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert await a.store.size(done.sha256) == len(data)


async def test_a_refused_chunk_leaves_the_upload_as_it_was(tmp_path: Path, clock: Clock) -> None:
    uploads = uploads_on(tmp_path, clock)
    info = await uploads.create("alice", 100, Metadata())
    info = await uploads.append(info, 0, body(b"a" * 40), None, None)
    wrong = Checksum("sha256", hashlib.sha256(b"other").digest())
    for chunks, checksum in [
        (body(b"b" * 30), wrong),
        (body(b"b" * 30, cut=True), Checksum("sha256", hashlib.sha256(b"b" * 30).digest())),
        (body(b"b" * 61), None),
    ]:
        with pytest.raises((TusError, Interrupted)):
            await uploads.append(info, 40, chunks, checksum, None)
        assert (await uploads.get(info.id, "alice")).offset == 40
        assert part(tmp_path, info).read_bytes() == b"a" * 40
    done = await uploads.append(info, 40, body(b"b" * 60), None, None)
    assert done.sha256 == hashlib.sha256(b"a" * 40 + b"b" * 60).hexdigest()
    assert uploads.metrics.files_checksum_failures == 1
    assert uploads.metrics.files_bytes_received == 100


async def test_a_crashed_writers_tail_past_the_offset_is_dropped(
    tmp_path: Path, clock: Clock
) -> None:
    uploads = uploads_on(tmp_path, clock)
    info = await uploads.create("alice", 20, Metadata())
    info = await uploads.append(info, 0, body(b"a" * 10), None, None)
    with part(tmp_path, info).open("ab") as file:  # written, never counted
        file.write(b"garbage")
    done = await uploads_on(tmp_path, clock).append(info, 10, body(b"b" * 10), None, None)
    assert done.sha256 == hashlib.sha256(b"a" * 10 + b"b" * 10).hexdigest()


async def test_concurrent_creations_never_exceed_the_quota(tmp_path: Path, clock: Clock) -> None:
    nodes = [uploads_on(tmp_path, clock, quota_bytes=25_000) for _ in range(4)]
    results = await asyncio.gather(
        *(n.create("alice", 10_000, Metadata()) for n in nodes for _ in range(2)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, UploadInfo) for r in results) == 2
    assert all(isinstance(r, UploadInfo) or r.status == 413 for r in results)  # type: ignore[union-attr]


async def test_one_writer_at_a_time(tmp_path: Path, clock: Clock) -> None:
    uploads = uploads_on(tmp_path, clock)
    info = await uploads.create("alice", 100, Metadata())
    reading, gate = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        reading.set()  # the first writer reads its body: it holds the lock
        yield b"a"
        await gate.wait()

    first = asyncio.create_task(uploads.append(info, 0, slow(), None, None))
    await reading.wait()
    try:
        with pytest.raises(TusError) as caught:
            await uploads_on(tmp_path, clock).append(info, 0, body(b"b"), None, None)
        assert caught.value.status == 423
    finally:
        gate.set()
        assert (await first).offset == 1
    assert part(tmp_path, info).read_bytes() == b"a"


async def test_expiry_follows_the_clock_and_spares_finished_uploads(
    tmp_path: Path, clock: Clock
) -> None:
    uploads = uploads_on(tmp_path, clock)
    stale = await uploads.create("alice", 100, Metadata())
    clock.now += 30
    fresh = await uploads.create("alice", 100, Metadata())
    done = await uploads.append(
        await uploads.create("alice", 3, Metadata()), 0, body(b"abc"), None, None
    )
    clock.now += 31
    fresh = await uploads.append(fresh, 0, body(b"x"), None, None)  # renews its expiry
    with pytest.raises(TusError) as caught:
        await uploads.get(stale.id, "alice")
    assert caught.value.status == 410
    assert await uploads.expire() == 1
    assert uploads.metrics.files_uploads_expired == 1
    with pytest.raises(TusError) as caught:
        await uploads.get(stale.id, "alice")
    assert caught.value.status == 404
    assert not part(tmp_path, stale).exists()
    assert (await uploads.get(fresh.id, "alice")).offset == 1
    clock.now += 10_000
    assert await uploads.expire() == 1  # fresh, at last
    assert (await uploads.get(done.id, "alice")).complete


async def test_a_zero_length_upload_is_complete_at_once(tmp_path: Path, clock: Clock) -> None:
    uploads = uploads_on(tmp_path, clock)
    info = await uploads.create("alice", 0, Metadata())
    assert info.sha256 == hashlib.sha256().hexdigest()
    with pytest.raises(TusError) as caught:
        await uploads.append(info, 0, body(b"x"), None, None)
    assert caught.value.status == 403


async def test_a_damaged_info_file_reads_as_no_upload(tmp_path: Path, clock: Clock) -> None:
    uploads = uploads_on(tmp_path, clock)
    info = await uploads.create("alice", 10, Metadata())
    path = part(tmp_path, info).with_suffix(".json")
    for damage in [
        b"",
        b"{",
        b"[]",
        b'{"id": 1}',
        encode(info).replace(b'"offset":0', b'"offset":11'),
    ]:
        path.write_bytes(damage)
        with pytest.raises(TusError) as caught:
            await uploads.get(info.id, "alice")
        assert caught.value.status == 404
    assert decode(encode(info)) == info
    assert decode(encode(info).replace(b'"length":10', b'"length":true')) is None


async def test_the_store_refuses_what_is_not_a_digest(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    for name in ("../../etc/passwd", "A" * 64, "a" * 63, ""):
        with pytest.raises(ValueError):
            store.path(name)
    assert await store.size("a" * 64) is None
