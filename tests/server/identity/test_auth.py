"""Token checks (docs/protocol.md section 4), without I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fieldpush.errors import AuthError
from fieldpush.identity.auth import TokenVerifier, mint_token
from fieldpush.settings import Secret, Settings

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


def hs256(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "sales",
        "teams": ["north"],
        # An hour: the parametrized tokens are made at collection, and a full run on
        # a busy machine can take minutes before these tests run.
        "exp": int(time.time()) + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=Secret(SECRET)))


def test_valid_token(verifier: TokenVerifier) -> None:
    identity = verifier.verify(hs256(claims()))
    assert (identity.user, identity.role, identity.teams) == (
        "alice",
        "sales",
        frozenset({"north"}),
    )
    token = hs256(claims())
    assert verifier.verify(token) == verifier.verify(token)  # the second from the cache


def test_minted_tokens_verify() -> None:
    settings = Settings(jwt_secret=Secret(SECRET), jwt_issuer="crm", jwt_audience="fieldpush")
    token = mint_token(settings, user="bob", role="dispatcher", teams=["a", "b"], ttl_s=30)
    assert TokenVerifier(settings).verify(token).teams == frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (hs256(claims(exp=int(time.time()) - 60)), "expired"),
        (hs256(claims(nbf=int(time.time()) + 600)), "not valid yet"),
        (hs256(claims(), secret="another-secret-that-is-32-bytes-long!!"), "signature"),
        (hs256(claims(exp=None)), "'exp' is required"),
        (hs256(claims(exp=True)), "'exp' is required"),
        (hs256(claims(exp="soon")), "'exp' is required"),
        (hs256(claims(sub=None)), "'sub' is required"),
        (hs256(claims(sub="")), "'sub' is required"),
        (hs256(claims(sub="al ice")), "'sub' is required"),
        (hs256(claims(sub="al\x07ice")), "'sub' is required"),
        (hs256(claims(sub="a" * 300)), "'sub' is required"),
        (hs256(claims(teams=["no rth"])), "'teams'"),
        (hs256(claims(role="king")), "unknown role"),
        (hs256(claims(teams="north")), "'teams'"),
        (hs256(claims(aud="other")), "audience"),
        (hs256(claims(), crit=["exp"]), "critical"),
        (jwt.encode(claims(), None, algorithm="none"), "algorithm 'none'"),
        (jwt.encode(claims(), SECRET * 2, algorithm="HS384"), "algorithm 'HS384'"),
        ("not-a-token", "three"),
        ("a.b.c", "base64url"),
        (hs256(claims())[:-3] + "===", "base64url"),
        ("", "no token"),
    ],
)
def test_refused_tokens(verifier: TokenVerifier, token: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        verifier.verify(token)


def test_cached_tokens_keep_the_expiry_leeway(verifier: TokenVerifier) -> None:
    """A token within the 5 s clock-skew allowance passes on every use, not only the first."""
    token = hs256(claims(exp=int(time.time()) - 2))
    assert verifier.verify(token).user == "alice"
    assert verifier.verify(token).user == "alice"  # now from the cache


def test_minting_refuses_ids_the_server_would_refuse() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    with pytest.raises(ValueError, match="spaces"):
        mint_token(settings, user="al ice", role="sales")
    with pytest.raises(ValueError, match="spaces"):
        mint_token(settings, user="alice", role="sales", teams=["no rth"])


def test_issuer_and_audience_when_configured() -> None:
    verifier = TokenVerifier(
        Settings(jwt_secret=Secret(SECRET), jwt_issuer="crm", jwt_audience="fieldpush")
    )
    assert verifier.verify(hs256(claims(iss="crm", aud=["x", "fieldpush"]))).user == "alice"
    with pytest.raises(AuthError, match="issuer"):
        verifier.verify(hs256(claims(iss="evil", aud="fieldpush")))
    with pytest.raises(AuthError, match="audience"):
        verifier.verify(hs256(claims(iss="crm")))


def _pem(private: Any) -> tuple[bytes, bytes]:
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return public, secret


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_keys_by_kid(tmp_path: Path, algorithm: str) -> None:
    make = (
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
        if algorithm == "RS256"
        else (lambda: ec.generate_private_key(ec.SECP256R1()))
    )
    public, private = _pem(make())
    _, other_private = _pem(make())
    (tmp_path / "crm.pem").write_bytes(public)
    settings = Settings(
        jwt_algorithms=(algorithm,), jwt_public_keys={"crm-1": str(tmp_path / "crm.pem")}
    )
    verifier = TokenVerifier(settings)
    good = jwt.encode(claims(), private, algorithm=algorithm, headers={"kid": "crm-1"})
    assert verifier.verify(good).user == "alice"
    forged = jwt.encode(claims(), other_private, algorithm=algorithm, headers={"kid": "crm-1"})
    with pytest.raises(AuthError, match="invalid token"):
        verifier.verify(forged)
    with pytest.raises(AuthError, match="unknown key id"):
        verifier.verify(jwt.encode(claims(), private, algorithm=algorithm, headers={"kid": "nope"}))
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(
            jwt.encode(
                claims(exp=int(time.time()) - 60),
                private,
                algorithm=algorithm,
                headers={"kid": "crm-1"},
            )
        )
    # Key confusion: an HMAC token "signed" with the public key is not accepted.
    confused = jwt.encode(claims(), "x" * 40, algorithm="HS256")
    with pytest.raises(AuthError, match="algorithm 'HS256' is not accepted"):
        verifier.verify(confused)


# ------------------------------------------------------------------ hostile tokens


def _segment(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(header: Any, payload: Any) -> str:
    return f"{_segment(header)}.{_segment(payload)}.{_segment(b'not-a-signature')}"


@pytest.fixture
def rs256_verifier(tmp_path: Path) -> tuple[TokenVerifier, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public, pem = _pem(private)
    (tmp_path / "crm.pem").write_bytes(public)
    settings = Settings(
        jwt_secret=Secret(SECRET),
        jwt_algorithms=("HS256", "RS256"),
        jwt_public_keys={"crm-1": str(tmp_path / "crm.pem")},
    )
    return TokenVerifier(settings), pem


def clean(reason: str) -> bool:
    """A refusal reason fit for a close frame and a log line: printable text,
    no object reprs (defect 7: PyJWT's ``<generator object ... at 0x...>``)."""
    return reason.isprintable() and len(reason) < 200 and re.search(r"object|0x", reason) is None


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ({"alg": "RS256", "kid": {}}, claims()),
        ({"alg": "RS256", "kid": []}, claims()),
        ({"alg": "RS256", "kid": 7}, claims()),
        ({"alg": ["RS256"]}, claims()),
        ({"alg": "RS256", "kid": "crm-1", "b64": False}, claims()),
        ({"alg": "RS256", "kid": "crm-1"}, [1, 2]),
        ({"alg": "RS256", "kid": "crm-1"}, b"\xff not json"),
        ({"alg": "HS256"}, b"[" * 60_000),
        (b"[" * 60_000, claims()),
    ],
)
def test_hostile_headers_fail_closed_into_auth_error(
    rs256_verifier: tuple[TokenVerifier, Any], header: Any, payload: Any
) -> None:
    """Defect 1 and 7 of issue 11: whatever the header holds, the verifier
    raises AuthError (never TypeError, RecursionError...) with a clean reason."""
    verifier, _ = rs256_verifier
    with pytest.raises(AuthError) as refused:
        verifier.verify(_unsigned(header, payload))
    assert clean(str(refused.value)), str(refused.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"role": ["admin"]},
        {"role": {"admin": 1}},
        {"sub": ["alice"]},
        {"teams": [["north"]]},
        {"exp": float("nan")},
        {"exp": float("inf")},
        {"exp": 10**400},
        {"exp": int(time.time()) + 3600.5},
        {"nbf": float("nan")},
        {"iat": float("nan")},
        {"iat": "yesterday"},
        {"aud": {"x": 1}},
    ],
)
def test_wrong_claim_types_are_auth_errors(
    rs256_verifier: tuple[TokenVerifier, Any], changes: dict[str, Any]
) -> None:
    """Defects 3 and 7: validly signed, wrong claim types → AuthError, for HS256
    and RS256 alike; ``exp``/``nbf``/``iat`` must be finite integers."""
    verifier, pem = rs256_verifier
    body = claims(**changes)
    hs = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(body)}"
    signature = hmac.new(SECRET.encode(), hs.encode(), hashlib.sha256).digest()
    tokens = [
        f"{hs}.{_segment(signature)}",
        jwt.api_jws.encode(
            json.dumps(body).encode(), pem, algorithm="RS256", headers={"kid": "crm-1"}
        ),
    ]
    for token in tokens:
        with pytest.raises(AuthError) as refused:
            verifier.verify(token)
        assert clean(str(refused.value)), str(refused.value)


def _non_canonical(token: str) -> list[str]:
    """Spellings of ``token`` that decode to the same bytes leniently."""
    head, payload, signature = token.split(".")
    spellings = []
    for index, segment in enumerate((head, payload, signature)):
        parts = [head, payload, signature]
        parts[index] = segment.replace("-", "+").replace("_", "/")
        if parts[index] != segment:
            spellings.append(".".join(parts))
        parts[index] = segment[:4] + "!!" + segment[4:]
        spellings.append(".".join(parts))
        parts[index] = segment + "="
        spellings.append(".".join(parts))
    last = signature[-1]
    # The last character's unused low bits set: the same bytes, another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 15, 3: 3}.get(len(signature) % 4, 0)
    if unused:
        spellings.append(f"{head}.{payload}.{signature[:-1]}{alphabet[alphabet.index(last) | 1]}")
    return spellings


def test_only_canonical_base64url_is_accepted(rs256_verifier: tuple[TokenVerifier, Any]) -> None:
    """Defect 7: ``+/`` for ``-_``, inserted ``!!``, padding or set unused bits
    in any segment are refused, for HS256 and RS256 (which PyJWT alone accepts)."""
    verifier, pem = rs256_verifier
    tokens = []
    for user in (f"user{n}" for n in range(200)):  # until the signatures hold - and _
        tokens.append(hs256(claims(sub=user)))
        tokens.append(
            jwt.encode(claims(sub=user), pem, algorithm="RS256", headers={"kid": "crm-1"})
        )
        if all(any(c in t.split(".")[2] for c in "-_") for t in tokens[-2:]):
            break
    for token in tokens[-2:]:
        assert verifier.verify(token).user.startswith("user")
        for spelling in _non_canonical(token):
            with pytest.raises(AuthError, match="base64url"):
                verifier.verify(spelling)
