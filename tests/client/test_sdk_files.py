"""The SDK's attachments (fieldpush_client.files) against an in-process node
on a real socket and its real tus endpoint: attach returns at once and the
batch uploads, the reference is an ordinary edit (a refused one lands in
needs-attention), an upload resumes across a real restart re-sending at most
one chunk, downloads are cached encrypted, a remote wipe takes the queue and
the cache with the store."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fieldpush_client import PushClient, SyncClient, SyncStore
from fieldpush_client.batch import BatchSync
from fieldpush_client.files import Attachment, Attachments
from tests.support.node import RunningNode, node_settings, running_node
from tests.support.stores import STORE_KEY, raw_bytes
from tests.support.timing import eventually

KIB = 1024
CHUNK = 16 * KIB
#: A JPEG as far as sniffing goes: its magic bytes, then a recognisable body.
PHOTO = b"\xff\xd8\xff\xe0" + b"PUMP-PHOTO-SECRET-" * 6000


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    settings = node_settings(
        files_dir=str(tmp_path / "files"), poll_intervals_s={"low": 900.0, "batch": 900.0}
    )
    async with running_node(settings) as running:
        await running.crm_put(
            "follow_up", "f-1", customer="c-1", owner="alice", team="north", note="pump"
        )
        yield running


def client_for(node: RunningNode, user: str = "alice") -> PushClient:
    token = node.token(user, "sales", ("north",))
    return PushClient(node.ws_url, token=token, device=f"{user}-phone")


def received(node: RunningNode) -> int:
    return node.node.metrics.files_bytes_received


async def test_attach_returns_at_once_and_a_batch_uploads_and_references_it(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    seen: list[tuple[int, int]] = []
    async with client_for(node) as client, SyncClient(client, store) as sync:
        await eventually(lambda: store.cursor is not None, message="the core pull")
        files = Attachments(
            sync, chunk_size=CHUNK, on_progress=lambda a: seen.append((a.sent, a.size))
        )
        photo = tmp_path / "pump.jpg"
        photo.write_bytes(PHOTO)
        handle = files.attach("follow_up", "f-1", "photos", photo)
        assert (handle.state, handle.sent, handle.size) == ("queued", 0, len(PHOTO))
        assert received(node) == 0  # nothing is sent by attach
        outcome = await BatchSync(sync, budget_bytes=10 * len(PHOTO), files=files).run()
        assert outcome.file_bytes == len(PHOTO)
        assert handle.state == "done"
        assert seen[-1] == (len(PHOTO), len(PHOTO)) and len(seen) == -(-len(PHOTO) // CHUNK)
        value = handle.value
        assert value is not None
        assert value["sha256"] == hashlib.sha256(PHOTO).hexdigest()
        assert (value["name"], value["content_type"], value["size"]) == (
            "pump.jpg",
            "image/jpeg",
            len(PHOTO),
        )
        await eventually(lambda: not store.queued(), message="the reference is flushed")
        assert store.needs_attention() == []
        await sync.pull()
        assert store.record("follow_up", "f-1") is not None
        assert await files.open_file(value) == PHOTO


async def test_the_budget_splits_an_upload_across_batches(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        handle = files.attach("follow_up", "f-1", "photos", PHOTO, name="a.jpg")
        batch = BatchSync(sync, budget_bytes=3 * CHUNK, files=files)
        first = await batch.run()
        assert first.file_bytes == 3 * CHUNK and handle.state == "queued"
        assert handle.sent == 3 * CHUNK == received(node)
        while handle.state == "queued":
            await batch.run()
        assert handle.state == "done" and received(node) == len(PHOTO)


async def test_a_metered_network_sends_no_file_byte(node: RunningNode, tmp_path: Path) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        handle = files.attach("follow_up", "f-1", "photos", PHOTO, name="a.jpg")
        outcome = await BatchSync(sync, files=files, unmetered=lambda: False).run()
        assert outcome.held is not None and outcome.file_bytes == 0
        assert received(node) == 0 and handle.sent == 0


async def test_an_upload_resumes_after_a_restart_resending_at_most_one_chunk(
    node: RunningNode, tmp_path: Path
) -> None:
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        task: asyncio.Task[int] | None = None

        def cut_soon(attachment: Attachment) -> None:
            if attachment.sent >= len(PHOTO) // 2 and task is not None:
                asyncio.get_running_loop().call_soon(task.cancel)  # mid the next PATCH

        files.on_progress = cut_soon
        handle = files.attach("follow_up", "f-1", "photos", PHOTO, name="a.jpg")
        task = asyncio.create_task(files.upload())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert handle.state == "queued" and 0 < handle.sent < len(PHOTO)
    store.close()
    before = received(node)

    reopened = SyncStore(db, key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, reopened) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        [resumed] = files.attachments()
        assert resumed.state == "queued" and resumed.size == len(PHOTO)
        await files.upload()
        assert resumed.state == "done"
        resent = received(node) - len(PHOTO)
        assert 0 <= resent <= CHUNK, f"{resent} bytes sent twice (before the cut: {before})"
        await eventually(lambda: not reopened.queued(), message="the reference is flushed")
        assert reopened.needs_attention() == []
        assert await files.open_file(resumed.value or {}) == PHOTO


async def test_a_refused_reference_lands_in_needs_attention(
    node: RunningNode, tmp_path: Path
) -> None:
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        # not a photo: the field's content_types refuse the sniffed bytes
        handle = files.attach("follow_up", "f-1", "photos", b"#!/bin/sh\n" * 100, name="x.jpg")
        await files.upload()
        await eventually(lambda: not store.queued(), message="the reference is answered")
        assert handle.state == "rejected"
        [refused] = store.needs_attention()
        assert refused.mid == handle.mid and refused.reason == "validation"
        assert "photos" in (refused.message or "")


async def test_downloads_are_cached_encrypted_and_a_wipe_takes_queue_and_cache(
    node: RunningNode, tmp_path: Path
) -> None:
    db = tmp_path / "phone.db"
    store = SyncStore(db, key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, store) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        handle = files.attach("follow_up", "f-1", "photos", PHOTO, name="a.jpg")
        pending = files.attach("follow_up", "f-1", "photos", PHOTO[:50_000], name="b.jpg")
        await files.upload(budget_bytes=len(PHOTO))
        assert handle.state == "done" and pending.state == "queued"
        value = handle.value
        assert value is not None
        assert await files.open_file(value) == PHOTO
        served = node.node.metrics.files_bytes_received
        again = Attachments(sync)  # a cold handle on the same store: the cache is in the file
        assert await again.open_file(value) == PHOTO
        assert node.node.metrics.files_bytes_received == served
        for name, data in raw_bytes(db).items():
            assert b"PUMP-PHOTO-SECRET" not in data, f"plaintext of the photo in {name}"
        store.erase()
    assert raw_bytes(db) == {}  # the file and its side files are gone


async def test_prefetch_own_downloads_the_files_of_records_the_user_owns(
    node: RunningNode, tmp_path: Path
) -> None:
    uploader = SyncStore(tmp_path / "other.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, uploader) as sync:
        files = Attachments(sync, chunk_size=CHUNK)
        handle = files.attach("follow_up", "f-1", "photos", PHOTO, name="a.jpg")
        await files.upload()
        await eventually(lambda: not uploader.queued(), message="the reference is flushed")
    phone = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    async with client_for(node) as client, SyncClient(client, phone) as sync:
        lazy = Attachments(sync, prefetch="none")
        eager = Attachments(sync, prefetch="own")
        batch = BatchSync(sync)
        await batch.run()  # the batch-class photos arrive
        record = phone.record("follow_up", "f-1") or {}
        assert record.get("photos") == [handle.value]
        assert await lazy.prefetch_own() == 0
        assert await eager.prefetch_own() == len(PHOTO)
        assert await eager.prefetch_own() == 0  # cached: nothing downloaded again


def test_attach_copies_a_file_in_so_the_app_may_delete_it(tmp_path: Path) -> None:
    photo = tmp_path / "pump.jpg"
    photo.write_bytes(PHOTO)
    store = SyncStore(tmp_path / "phone.db", key=STORE_KEY)
    client = PushClient("ws://127.0.0.1:9/v1/ws", token="t", device="d")
    files = Attachments(SyncClient(client, store, auto=False), chunk_size=CHUNK)
    handle = files.attach("follow_up", "f-1", "photos", photo)
    os.remove(photo)
    assert handle.size == len(PHOTO)
    for name, data in raw_bytes(tmp_path / "phone.db").items():
        assert b"PUMP-PHOTO-SECRET" not in data, f"plaintext of the photo in {name}"
    store.close()
