"""fieldpush_client.webhook: the receiver's check of a delivery's signature (pure)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush_client.errors import FieldpushClientError, WebhookSignatureError
from fieldpush_client.webhook import SIGNATURE_HEADER, TOLERANCE_S, sign, verify

SECRET = "whsec-test-0123456789abcdef0123456789"
BODY = b'{"id":"c1","changes":[],"cursor":"c1","gap":false}'
NOW = 1_790_000_000.0


def reason_of(body: bytes, header: object, secret: str = SECRET, now: float = NOW) -> str:
    with pytest.raises(WebhookSignatureError) as caught:
        verify(body, header, secret, now=now)
    return caught.value.reason


def test_a_signed_body_verifies_and_returns_its_timestamp() -> None:
    header = sign(BODY, SECRET, int(NOW))
    assert verify(BODY, header, SECRET, now=NOW) == int(NOW)
    assert SIGNATURE_HEADER == "Fieldpush-Signature"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The documented construction (docs/sync.md), so any language can check it."""
    expected = hmac.new(SECRET.encode(), b"1790000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, 1_790_000_000) == f"t=1790000000,v1={expected}"


def test_a_tampered_body_is_a_mismatch() -> None:
    header = sign(BODY, SECRET, int(NOW))
    assert reason_of(BODY.replace(b"false", b"true "), header) == "mismatch"
    assert reason_of(BODY + b" ", header) == "mismatch"


def test_the_wrong_secret_is_a_mismatch() -> None:
    header = sign(BODY, "another-secret-0123456789abcdef0123", int(NOW))
    assert reason_of(BODY, header) == "mismatch"


def test_a_changed_timestamp_with_the_old_signature_is_a_mismatch() -> None:
    header = sign(BODY, SECRET, int(NOW))
    forged = header.replace(f"t={int(NOW)}", f"t={int(NOW) + 1}")
    assert reason_of(BODY, forged) == "mismatch"


def test_a_stale_or_future_timestamp_is_refused_even_when_signed() -> None:
    old = sign(BODY, SECRET, int(NOW) - TOLERANCE_S - 1)
    ahead = sign(BODY, SECRET, int(NOW) + TOLERANCE_S + 1)
    assert reason_of(BODY, old) == "stale"
    assert reason_of(BODY, ahead) == "future"
    edge = sign(BODY, SECRET, int(NOW) - TOLERANCE_S)
    assert verify(BODY, edge, SECRET, now=NOW) == int(NOW) - TOLERANCE_S
    with pytest.raises(WebhookSignatureError):
        verify(BODY, edge, SECRET, now=NOW, tolerance_s=10)


def test_one_matching_signature_among_several_verifies() -> None:
    """A secret rotation: the receiver checks against whichever ``v1`` matches."""
    good = sign(BODY, SECRET, int(NOW))
    other = sign(BODY, "old-secret-0123456789abcdef012345678", int(NOW)).split(",")[1]
    assert verify(BODY, f"{good},{other}", SECRET, now=NOW) == int(NOW)
    assert verify(BODY, f"{good},v0=ignored", SECRET, now=NOW) == int(NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"t=1,v1=00",
        42,
        "",
        "garbage",
        "t=,v1=" + "0" * 64,
        "t=abc,v1=" + "0" * 64,
        "t=-5,v1=" + "0" * 64,
        "t=1790000000",
        "v1=" + "0" * 64,
        "t=1790000000,v1=" + "0" * 63,
        "t=1790000000,v1=" + "G" * 64,
        "t=1790000000,v1=" + "A" * 64,
        "t=1790000000,t=1790000000,v1=" + "0" * 64,
        "t=99999999999999999999,v1=" + "0" * 64,
        "t=1790000000," + ",".join(["v1=" + "0" * 64] * 9),
        "t=1790000000,v1=" + "0" * 64 + "x" * 2000,
        "t=1790000000\r\nX-Injected: 1,v1=" + "0" * 64,
        "t=1790000000,v1=" + "0" * 64 + "\x00",
        "t=1790000000,v1=" + "0" * 64 + "\x1b[31m",
        "t=\uff11\uff17\uff19\uff10,v1=" + "0" * 64,
    ],
)
def test_malformed_headers_are_refused_without_echoing_them(header: object) -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        verify(BODY, header, SECRET, now=NOW)
    assert caught.value.reason == "malformed"
    assert isinstance(caught.value, FieldpushClientError)
    if isinstance(header, str) and len(header) > 20:
        assert header not in str(caught.value)


def test_the_real_signature_with_control_characters_around_it_is_refused() -> None:
    header = sign(BODY, SECRET, int(NOW))
    assert reason_of(BODY, header + "\n") == "malformed"
    assert reason_of(BODY, "\t" + header) == "malformed"


def test_misuse_is_a_type_or_value_error_not_a_pass() -> None:
    header = sign(BODY, SECRET, int(NOW))
    with pytest.raises(TypeError):
        verify(BODY.decode(), header, SECRET, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secret"):
        verify(BODY, header, "", now=NOW)


@given(st.binary(max_size=512), st.text(max_size=300))
def test_any_header_either_verifies_or_raises_the_signature_error(body: bytes, header: str) -> None:
    try:
        verify(body, header, SECRET, now=NOW)
    except WebhookSignatureError as exc:
        assert exc.reason in {"malformed", "stale", "future", "mismatch"}
    else:
        pytest.fail("a random header verified")
