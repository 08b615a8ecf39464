"""File fields (issue 14, items 3 and 6): the ``file`` type and lists of files
in the schema, refused declarations, and references in sync mutations checked
against real uploads on a directory (fieldpush.files.uploads.Uploads) through
the engine on both record stores: a reference to no upload, an unfinished
one, another user's, a lying size or sha256, too big, a type not allowed, a
content-type lie, hostile names and shapes. Each is ``validation`` naming the
field, and nothing stored changes; a reference the record holds already is
kept when someone else edits the record."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fieldpush.backend.base import Backend, RecordStore
from fieldpush.files.headers import Metadata
from fieldpush.files.store import DirectoryStore
from fieldpush.files.uploads import Uploads
from fieldpush.metrics import Metrics
from fieldpush.sync import sniff
from fieldpush.sync.codec import decode_state
from fieldpush.sync.engine import SyncEngine
from fieldpush.sync.errors import SyncError
from fieldpush.sync.rules import Actor
from fieldpush.sync.schema import SchemaError, load_schema, parse_schema
from fieldpush_client.protocol import ErrorCode, Mutation
from tests.support.backends import Sink
from tests.sync.test_engine import Recorder, engine

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
PDF = b"%PDF-1.7\n" + bytes(64)
ELF = b"\x7fELF\x02\x01\x01" + bytes(64)

ALICE = Actor("alice", "sales", "phone-1", frozenset({"north"}))
CAROL = Actor("carol", "sales", "phone-3", frozenset({"north"}))
ADMIN = Actor("root", "admin", "console", frozenset({"north"}))


@pytest.fixture
def records(backend: tuple[Backend, Sink]) -> RecordStore:
    return backend[0].records


@pytest.fixture
def uploads(tmp_path: Path) -> Uploads:
    root = tmp_path / "files"
    return Uploads(
        root,
        DirectoryStore(root),
        Metrics(gauges={}, catchups=lambda: 0),
        max_bytes=64 * 1024 * 1024,
        quota_bytes=256 * 1024 * 1024,
        expiry_s=3600,
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(
    uploads: Uploads, owner: str, data: bytes, *, finish: bool = True, name: str = "pump.png"
) -> dict[str, Any]:
    """A tus upload of ``data`` by ``owner`` (whole, or all but its last byte)
    and the reference a phone would send for it, as a PNG."""
    info = await uploads.create(owner, len(data), Metadata(name, "image/png"))
    sent = data if finish else data[:-1]
    await uploads.append(info, 0, _once(sent), None, len(sent))
    return {
        "id": info.id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": "image/png",
        "name": name,
    }


_stamps = iter(range(1, 10**6))


def mutation(mid: str, rid: str, **fields: Any) -> Mutation:
    return Mutation(mid, "follow_up", rid, fields, (time.time_ns() // 1_000_000, next(_stamps)))


async def create_follow_up(sync: SyncEngine, rid: str = "f1") -> None:
    (result,) = await sync.mutate(ALICE, [mutation(f"new-{rid}", rid, customer="c1")])
    assert result["status"] == "applied", result


async def stored_photos(records: RecordStore, rid: str = "f1") -> Any:
    (found,), _ = await records.load([f"follow_up:{rid}"], [])
    state = decode_state(found)
    return None if state is None else state.value("photos")


# ------------------------------------------------------------------ the schema


def schema_with(**field: Any) -> dict[str, Any]:
    return {
        "types": {
            "note": {
                "scope": "owner",
                "read": {"sales": "own"},
                "write": {"sales": "own"},
                "create": ["sales"],
                "fields": {"owner": {"type": "string"}, "f": field},
            }
        }
    }


def test_the_default_schema_has_the_attachment_fields() -> None:
    schema = load_schema("config/schema.toml")
    assert schema.types["follow_up"].file_fields == {"photos", "voice_notes"}
    assert schema.types["device"].file_fields == {"debug_files", "drawings"}
    assert schema.types["work_order"].file_fields == {"fault_photos"}
    for rtype in schema.types.values():
        for name in rtype.file_fields:
            spec = rtype.fields[name]
            assert spec.sync == "batch" and spec.max_size and spec.content_types
    assert schema.types["device"].fields["drawings"].content_types == (
        "application/pdf",
        "image/png",
        "image/jpeg",
    )


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"type": "file", "max_size": 0}, "max_size must be a positive integer"),
        ({"type": "file", "max_size": True}, "max_size must be a positive integer"),
        ({"type": "file", "max_size": "1 MB"}, "max_size must be a positive integer"),
        ({"type": "file", "content_types": "image/png"}, "content_types must be a list"),
        ({"type": "file", "content_types": []}, "content_types must be a list"),
        (
            {"type": "file", "content_types": ["image/tiff"]},
            "no content sniffer for ['image/tiff']",
        ),
        ({"type": "file", "content_types": ["image/png", "image/png"]}, "lists a type twice"),
        ({"type": "string", "max_size": 10}, 'max_size and content_types are for type = "file"'),
        ({"type": "list", "content_types": ["image/png"]}, 'are for type = "file"'),
        ({"type": "file", "pattern": "x"}, "pattern must be a regular expression, for a string"),
        ({"type": "file", "max_length": 3}, 'pattern and max_length are not for type = "file"'),
        ({"type": "file", "rule": "append"}, 'rule = "append" is for list fields'),
    ],
)
def test_a_broken_file_declaration_is_refused_naming_the_place(
    field: dict[str, Any], problem: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(schema_with(**field), "s.toml")
    assert str(caught.value).startswith("s.toml: note.f: ")
    assert problem in str(caught.value)


def test_every_sniffer_tells_its_type_from_the_others() -> None:
    samples = {
        "image/jpeg": JPEG,
        "image/png": PNG,
        "image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
        "application/pdf": PDF,
        "audio/mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
        "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
        "audio/ogg": b"OggS\x00\x02",
        "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
        "text/plain": "Pumpe defekt, Öl läuft aus\n".encode(),
    }
    for declared, sample in samples.items():
        assert sniff.matches(declared, sample), declared
        others = [t for t, s in samples.items() if t != declared and sniff.matches(declared, s)]
        assert others == [], (declared, others)
    assert sniff.matches("image/heif", b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00")
    assert sniff.matches("audio/m4a", samples["audio/mp4"])
    assert not sniff.matches("text/plain", b"ab\x00cd")
    assert not sniff.matches("text/plain", b"\xff\xfe bad utf-8")
    assert sniff.matches("text/plain", "é".encode()[:1])  # a character cut at the end
    assert not sniff.matches("image/png", ELF)
    assert not sniff.matches("image/tiff", b"II*\x00")  # no sniffer: never a match


# ------------------------------------------------------------------ references


async def test_a_complete_own_upload_is_referenced_and_indexed(
    records: RecordStore, uploads: Uploads
) -> None:
    sync = engine(records, Recorder(), uploads=uploads)
    await create_follow_up(sync)
    ref = await upload(uploads, "alice", PNG)
    (result,) = await sync.mutate(ALICE, [mutation("m1", "f1", photos=[ref])])
    assert result["status"] == "applied", result
    assert await stored_photos(records) == [ref]
    assert await records.file_records(ref["id"]) == ["follow_up:f1"]
    assert await sync.file_reference(ALICE, ref["id"]) == ("follow_up:f1", ref)
    assert await sync.file_reference(CAROL, ref["id"]) is None  # not her record
    assert await sync.file_reference(ADMIN, ref["id"]) == ("follow_up:f1", ref)


def _lie(ref: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**ref, **changes}


REFUSED: list[tuple[str, Any, str]] = [
    ("no upload", lambda r: _lie(r, id="0" * 48), "photos: no upload 000"),
    (
        "a path in the id",
        lambda r: _lie(r, id="../../etc/passwd"),
        "photos[].id must be an upload id",
    ),
    ("a lying size", lambda r: _lie(r, size=r["size"] + 1), "photos: sha256 and size must be"),
    ("a lying sha256", lambda r: _lie(r, sha256="a" * 64), "photos: sha256 and size must be"),
    (
        "an upper-case sha256",
        lambda r: _lie(r, sha256=r["sha256"].upper()),
        "photos[].sha256 must be 64 lower-case hex",
    ),
    ("too big", lambda r: _lie(r, size=20971521), "photos[] may be at most 20971520 bytes"),
    (
        "a type not allowed",
        lambda r: _lie(r, content_type="application/pdf"),
        "photos[] must be one of image/jpeg",
    ),
    (
        "a content-type lie",
        lambda r: _lie(r, content_type="image/jpeg"),
        "photos: the file's content is not image/jpeg",
    ),
    (
        "a name with ../",
        lambda r: _lie(r, name="../../x.png"),
        "photos[].name must be a plain file name",
    ),
    (
        "a name with \\",
        lambda r: _lie(r, name="a\\b.png"),
        "photos[].name must be a plain file name",
    ),
    ("a name with NUL", lambda r: _lie(r, name="a\x00.png"), "photos[].name must not hold control"),
    (
        "a name with a newline",
        lambda r: _lie(r, name="a\n.png"),
        "photos[].name must not hold control",
    ),
    ("a huge name", lambda r: _lie(r, name="x" * 256), "photos[].name may be at most 255 bytes"),
    ("an empty name", lambda r: _lie(r, name=""), "photos[].name must be a file name"),
    ("an extra key", lambda r: {**r, "path": "/etc"}, 'photos[] must be a file {"id"'),
    (
        "a missing key",
        lambda r: {k: v for k, v in r.items() if k != "name"},
        'photos[] must be a file {"id"',
    ),
    ("a size as text", lambda r: _lie(r, size=str(r["size"])), "photos[].size must be an integer"),
    ("a negative size", lambda r: _lie(r, size=-1), "photos[].size must not be negative"),
    ("a bool size", lambda r: _lie(r, size=True), "photos[].size must be an integer"),
    ("a huge id", lambda r: _lie(r, id="a" * 10**6), "photos[].id must be an upload id"),
    ("a list, not a file", lambda r: [r], 'photos[] must be a file {"id"'),
    ("not a list", lambda r: r, "photos must be a list"),
]


@pytest.mark.parametrize(("what", "forge", "message"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_hostile_reference_is_validation_naming_the_field_and_changes_nothing(
    records: RecordStore, uploads: Uploads, what: str, forge: Any, message: str
) -> None:
    sync = engine(records, Recorder(), uploads=uploads)
    await create_follow_up(sync)
    ref = await upload(uploads, "alice", PNG)
    forged = forge(ref)
    value = forged if what == "not a list" else [forged]
    (result,) = await sync.mutate(ALICE, [mutation("m1", "f1", photos=value, note="x")])
    assert result["status"] == "rejected" and result["reason"] == "validation", result
    assert result["message"].startswith(message), result["message"]
    assert await stored_photos(records) is None
    assert await records.file_records(ref["id"]) == []
    (ok,) = await sync.mutate(ALICE, [mutation("m2", "f1", photos=[ref])])  # carries on
    assert ok["status"] == "applied"


async def test_an_unfinished_upload_or_another_users_cannot_be_referenced(
    records: RecordStore, uploads: Uploads
) -> None:
    sync = engine(records, Recorder(), uploads=uploads)
    await create_follow_up(sync)
    unfinished = await upload(uploads, "alice", PNG, finish=False)
    bobs = await upload(uploads, "bob", PNG + b"bob")
    (first, second) = await sync.mutate(
        ALICE,
        [mutation("m1", "f1", photos=[unfinished]), mutation("m2", "f1", photos=[bobs])],
    )
    assert first["reason"] == "validation" and "is not complete yet" in first["message"]
    assert second["reason"] == "validation"
    assert second["message"] == f"photos: no upload {bobs['id']} of yours (upload the file first)"
    assert await stored_photos(records) is None


async def test_a_reference_the_record_holds_is_kept_when_another_user_edits_it(
    records: RecordStore, uploads: Uploads
) -> None:
    sync = engine(records, Recorder(), uploads=uploads)
    await create_follow_up(sync)
    ref = await upload(uploads, "alice", PNG)
    (result,) = await sync.mutate(ALICE, [mutation("m1", "f1", photos=[ref])])
    assert result["status"] == "applied"
    second = await upload(uploads, "root", JPEG, name="more.jpg")
    second["content_type"] = "image/jpeg"
    (edit,) = await sync.mutate(ADMIN, [mutation("m2", "f1", photos=[ref, second], note="ok")])
    assert edit["status"] == "applied", edit  # alice's file stays; root's own is new
    assert await stored_photos(records) == [ref, second]
    (again,) = await sync.mutate(CAROL, [mutation("m3", "f1", photos=[ref])])
    assert again["reason"] == "not_found"  # the record is not hers to read


async def test_without_uploads_every_reference_is_refused(
    records: RecordStore, uploads: Uploads
) -> None:
    sync = engine(records, Recorder())
    await create_follow_up(sync)
    ref = await upload(uploads, "alice", PNG)
    (result,) = await sync.mutate(ALICE, [mutation("m1", "f1", photos=[ref])])
    assert result["reason"] == "validation"
    assert result["message"] == "photos: this server takes no file references"


async def test_a_crm_import_is_checked_the_same(records: RecordStore, uploads: Uploads) -> None:
    sync = engine(records, Recorder(), uploads=uploads)
    crm = Actor("crm", "service", "crm")
    alices = await upload(uploads, "alice", PNG)
    fields = {"customer": "c1", "owner": "alice", "team": "north"}
    with pytest.raises(SyncError) as caught:
        await sync.put_record(crm, "follow_up", "f9", {**fields, "photos": [alices]})
    assert caught.value.code is ErrorCode.INVALID
    assert caught.value.message.startswith(f"photos: no upload {alices['id']} of yours")
    assert await stored_photos(records, "f9") is None
    own = await upload(uploads, "crm", PNG + b"crm")
    await sync.put_record(crm, "follow_up", "f9", {**fields, "photos": [own]})
    assert await stored_photos(records, "f9") == [own]
    assert await records.file_records(own["id"]) == ["follow_up:f9"]
    assert await sync.file_reference(ALICE, own["id"]) == ("follow_up:f9", own)


async def test_a_field_the_role_may_not_read_grants_no_download(
    records: RecordStore, uploads: Uploads, tmp_path: Path
) -> None:
    schema = tmp_path / "schema.toml"
    schema.write_text(
        "[types.note]\n"
        'scope = "owner"\nteam = "team"\n'
        'read = { sales = "own", supervisor = "team" }\n'
        'write = { sales = "own" }\ncreate = ["sales"]\n'
        "[types.note.fields]\n"
        'owner = { type = "string" }\nteam = { type = "string" }\n'
        'public = { type = "file", content_types = ["image/png"] }\n'
        'private = { type = "file", content_types = ["image/png"], read = ["sales"] }\n'
    )
    sync = engine(records, Recorder(), uploads=uploads, schema_path=str(schema), mappings_path=None)
    shown_ref = await upload(uploads, "alice", PNG)
    hidden_ref = await upload(uploads, "alice", PNG + b"private")
    stamp = (time.time_ns() // 1_000_000, 0)
    fields = {"team": "north", "public": shown_ref, "private": hidden_ref}
    (result,) = await sync.mutate(ALICE, [Mutation("n1", "note", "n1", fields, stamp)])
    assert result["status"] == "applied", result
    supervisor = Actor("sue", "supervisor", "tablet", frozenset({"north"}))
    assert await sync.file_reference(supervisor, shown_ref["id"]) == ("note:n1", shown_ref)
    assert await sync.file_reference(supervisor, hidden_ref["id"]) is None
    assert await sync.file_reference(ALICE, hidden_ref["id"]) == ("note:n1", hidden_ref)
