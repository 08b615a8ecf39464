"""The tus headers' parsers (pure): strict numbers, metadata, checksum, version."""

from __future__ import annotations

import base64

import pytest

from fieldpush.files.headers import (
    Metadata,
    TusError,
    check_version,
    parse_checksum,
    parse_metadata,
    parse_number,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("value", ["0", "1", "007", "9" * 18])
def test_numbers_are_plain_decimal(value: str) -> None:
    assert parse_number("Upload-Length", value) == int(value)


@pytest.mark.parametrize(
    "value", [None, "", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "١٢", "²", "9" * 19]
)
def test_anything_else_is_400(value: str | None) -> None:
    with pytest.raises(TusError) as caught:
        parse_number("Upload-Offset", value)
    assert caught.value.status == 400
    assert "Upload-Offset" in caught.value.message


def test_metadata_keeps_the_name_and_type() -> None:
    value = f"filename {b64('pump 3 - left.jpg')},filetype {b64('image/jpeg')},is_confidential"
    assert parse_metadata(value) == Metadata(name="pump 3 - left.jpg", content_type="image/jpeg")
    assert parse_metadata(None) == parse_metadata("") == Metadata()
    assert parse_metadata(f"relativePath {b64('a/b')}") == Metadata()  # other keys: dropped


@pytest.mark.parametrize(
    "value",
    [
        "filename",  # an empty name
        "filename " + b64("../x"),
        "filename " + b64("/etc/passwd"),
        "filename " + b64("C:\\\\x"),
        "filename " + b64("."),
        "filename " + b64("a" * 256),
        "filename " + b64("bell\x07"),
        "filename " + b64("tab\t"),
        "filename " + b64("bidi\u202e"),
        "filetype " + b64("image"),
        "filetype " + b64("image/jpeg; x=1"),
        "filename %%%",
        "filename YQ",  # unpadded
        "filename /w==",  # not UTF-8
        "filename  " + b64("a"),  # two spaces
        "file,name " + b64("a") + ",",  # an empty pair at the end
        "ключ " + b64("a"),
        "a b c",
        "x " + b64("1") + ",x " + b64("2"),
        ",".join(f"k{i}" for i in range(17)),
        "k " + "A" * 5000,
    ],
)
def test_garbage_metadata_is_400(value: str) -> None:
    with pytest.raises(TusError) as caught:
        parse_metadata(value)
    assert caught.value.status == 400


def test_checksum_is_sha256_of_32_bytes() -> None:
    digest = bytes(range(32))
    parsed = parse_checksum("sha256 " + base64.b64encode(digest).decode())
    assert parsed is not None and parsed.digest == digest
    assert parse_checksum(None) is None
    for value in (
        "sha1 " + base64.b64encode(bytes(20)).decode(),
        "sha256",
        "sha256 !!",
        "sha256 AAAA",
    ):
        with pytest.raises(TusError) as caught:
            parse_checksum(value)
        assert caught.value.status == 400


@pytest.mark.parametrize("value", [None, "", "1.0", "0.2.2", "1.0.0 ", "1.0.0,0.2.2"])
def test_another_version_is_412(value: str | None) -> None:
    with pytest.raises(TusError) as caught:
        check_version(value)
    assert caught.value.status == 412
    check_version("1.0.0")
