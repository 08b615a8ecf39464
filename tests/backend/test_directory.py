"""The user directory's guarantees (fieldpush.backend.directory.Directory), on each
backend through the ``backend`` fixture (tests/conftest.py): compare-and-set
puts, unique user keys (atomic with the write), deletes by version, and pages
in id order."""

from __future__ import annotations

from typing import Any

from fieldpush.backend.directory import (
    DirectoryEntry,
    NameTaken,
    VersionMismatch,
    Written,
)
from tests.support.backends import Sink


def entry(entry_id: str, name: str, document: bytes = b"{}", modified: int = 2) -> DirectoryEntry:
    return DirectoryEntry(entry_id, name, name.lower(), 0, 1, modified, document)


async def test_put_is_compare_and_set(backend: tuple[Any, Sink]) -> None:
    directory = backend[0].directory
    assert await directory.get("a1") is None
    first = await directory.put(entry("a1", "Alice"), 0)
    assert isinstance(first, Written)
    assert first.entry.version == 1 and first.entry.created_ms == 1
    assert await directory.put(entry("a1", "Alice"), 0) == VersionMismatch(1)
    second = await directory.put(entry("a1", "Alice", b'{"x":1}', modified=5), 1)
    assert isinstance(second, Written) and second.entry.version == 2
    stored = await directory.get("a1")
    assert stored == DirectoryEntry("a1", "Alice", "alice", 2, 1, 5, b'{"x":1}')
    assert await directory.put(entry("a1", "Alice"), 1) == VersionMismatch(2)
    assert await directory.put(entry("zz", "Zed"), 3) == VersionMismatch(0)
    assert await directory.get("zz") is None


async def test_user_keys_stay_unique(backend: tuple[Any, Sink]) -> None:
    directory = backend[0].directory
    assert isinstance(await directory.put(entry("a1", "Alice"), 0), Written)
    assert await directory.put(entry("b2", "ALICE"), 0) == NameTaken("a1")
    assert await directory.get("b2") is None
    assert await directory.count() == 1
    found = await directory.by_user_key("alice")
    assert found is not None and found.id == "a1"
    # A rename frees the old key and takes the new one, in one step.
    assert isinstance(await directory.put(entry("a1", "Alicia"), 1), Written)
    assert await directory.by_user_key("alice") is None
    assert isinstance(await directory.put(entry("b2", "alice"), 0), Written)
    assert await directory.put(entry("b2", "Alicia"), 1) == NameTaken("a1")
    renamed = await directory.by_user_key("alicia")
    assert renamed is not None and renamed.id == "a1"


async def test_delete_by_version_and_pages_in_id_order(backend: tuple[Any, Sink]) -> None:
    directory = backend[0].directory
    for entry_id in ("c", "a", "d", "b"):
        assert isinstance(await directory.put(entry(entry_id, f"user-{entry_id}"), 0), Written)
    assert [e.id for e in await directory.page(0, 10)] == ["a", "b", "c", "d"]
    assert [e.id for e in await directory.page(1, 2)] == ["b", "c"]
    assert await directory.page(4, 2) == []
    assert await directory.page(0, 0) == []
    assert not await directory.delete("b", 7)
    assert not await directory.delete("nope", None)
    assert await directory.delete("b", 1)
    assert not await directory.delete("b", None)
    assert await directory.by_user_key("user-b") is None
    assert await directory.count() == 3
    assert [e.id for e in await directory.page(0, 10)] == ["a", "c", "d"]
    assert await directory.delete("c", None)
    # The key of a deleted entry is free again.
    assert isinstance(await directory.put(entry("e", "user-c"), 0), Written)
