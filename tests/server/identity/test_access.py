"""The node's access list (fieldpush.identity.access), without I/O: the rules
of docs/security.md "Revocation", the directory's role and teams, and what
each update reports as changed; and the verifier asking it about every token."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from fieldpush.backend.base import AccessSnapshot, AccountState, RevokedToken
from fieldpush.errors import AccessRevoked, AuthError
from fieldpush.identity.access import AccessList, Changes, close_code_for
from fieldpush.identity.auth import Identity, TokenVerifier
from fieldpush.settings import Secret, Settings
from fieldpush_client.protocol import CloseCode

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"
NOW = int(time.time())


def later_ms() -> int:
    """An hour from now, in ms (taken when the test runs, not at collection)."""
    return (int(time.time()) + 3600) * 1000


def identity(user: str = "ann", iat: int | None = NOW, jti: str | None = "t1") -> Identity:
    return Identity(user, "sales", frozenset({"north"}), NOW + 600.0, iat, jti)


def refusal(access: AccessList, who: Identity) -> str | None:
    try:
        access.check(who)
    except AccessRevoked as exc:
        return exc.reason
    return None


def test_a_user_never_changed_passes_unchanged() -> None:
    who = identity()
    assert AccessList().check(who) is who


def test_disabled_users_and_revoked_tokens_are_refused() -> None:
    access = AccessList()
    access.apply(AccountState("ann", active=False))
    access.revoke(RevokedToken("t9", later_ms()))
    assert refusal(access, identity()) == "account_disabled"
    assert refusal(access, identity("bob", jti="t9")) == "token_revoked"
    assert refusal(access, identity("bob", jti="t1")) is None
    assert refusal(access, identity("bob", jti=None)) is None


def test_a_revoked_token_past_its_time_is_forgotten() -> None:
    access = AccessList()
    access.revoke(RevokedToken("t1", (NOW - 1) * 1000))
    assert refusal(access, identity("bob")) is None


@pytest.mark.parametrize(
    ("iat", "verdict"),
    [
        (NOW - 10, "token_revoked"),
        (NOW - 1, "token_revoked"),
        (NOW, None),  # tokens_valid_after is NOW * 1000: issued in that second counts
        (NOW + 5, None),
        (None, "token_revoked"),  # no iat: it cannot show it is recent enough
    ],
)
def test_tokens_issued_before_the_users_cut_are_refused(iat: int | None, verdict: str) -> None:
    access = AccessList()
    access.apply(AccountState("ann", tokens_valid_after=NOW * 1000))
    assert refusal(access, identity(iat=iat)) == verdict


def test_the_directorys_role_and_teams_replace_the_claims() -> None:
    access = AccessList()
    access.apply(AccountState("ann", role="supervisor"))
    checked = access.check(identity())
    assert (checked.role, checked.teams) == ("supervisor", frozenset({"north"}))
    access.apply(AccountState("ann", teams=()))
    checked = access.check(identity())
    assert (checked.role, checked.teams) == ("sales", frozenset())


def test_updates_report_what_changed() -> None:
    access = AccessList()
    assert access.apply(AccountState("ann", active=False)) == Changes(users={"ann"})
    assert access.apply(AccountState("ann", active=False, changed_by="again")) == Changes()
    assert access.apply(AccountState("ann", active=False, role="admin")) == Changes(
        users={"ann"}, permissions={"ann"}
    )
    assert access.apply(AccountState("ann")) == Changes(users={"ann"}, permissions={"ann"})
    assert access.state("ann") == AccountState("ann")  # back to the defaults: forgotten
    assert access.revoke(RevokedToken("t1", later_ms())) == Changes(any_token=True)
    assert access.revoke(RevokedToken("t1", later_ms() + 30_000)) == Changes()


def test_a_snapshot_replaces_everything_and_reports_the_difference() -> None:
    access = AccessList()
    access.apply(AccountState("ann", active=False))
    access.apply(AccountState("bob", active=False))
    access.revoke(RevokedToken("t1", later_ms()))
    snapshot = AccessSnapshot(
        accounts=[AccountState("bob", active=False), AccountState("cy", role="admin")],
        revoked=[RevokedToken("t1", later_ms())],
    )
    assert access.replace(snapshot) == Changes(users={"ann", "cy"}, permissions={"cy"})
    assert refusal(access, identity("ann", jti=None)) is None  # enabled elsewhere meanwhile
    assert refusal(access, identity("bob", jti=None)) == "account_disabled"
    new_token = AccessSnapshot(accounts=[], revoked=[RevokedToken("t2", later_ms())])
    assert access.replace(new_token).any_token is True


def test_close_codes_for_refusals() -> None:
    assert close_code_for(AccessRevoked("account_disabled", "x")) == CloseCode.FORBIDDEN
    assert close_code_for(AuthError("token expired")) == CloseCode.UNAUTHORIZED


def token(**claims: Any) -> str:
    base: dict[str, Any] = {"sub": "ann", "role": "sales", "exp": NOW + 3600}
    base.update(claims)
    return jwt.encode(base, SECRET, algorithm="HS256")


def test_the_verifier_asks_the_access_list_about_every_token_even_cached_ones() -> None:
    access = AccessList()
    verifier = TokenVerifier(Settings(jwt_secret=Secret(SECRET)), access)
    valid = token(iat=NOW, jti="j-1")
    assert verifier.verify(valid).token_id == "j-1"
    access.revoke(RevokedToken("j-1", later_ms()))
    with pytest.raises(AccessRevoked) as caught:
        verifier.verify(valid)  # cached by now: still refused
    assert caught.value.reason == "token_revoked"


@pytest.mark.parametrize(
    "claims",
    [
        {"jti": 5},
        {"jti": ""},
        {"jti": "x" * 201},
        {"jti": ["a"]},
        {"jti": None, "iat": "1"},
        {"iat": 1.5},
        {"iat": -1},
        {"iat": 2**60},
    ],
)
def test_a_jti_or_iat_of_the_wrong_shape_is_an_invalid_token(claims: dict[str, Any]) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=Secret(SECRET)), AccessList())
    forged = token(**{k: v for k, v in claims.items() if v is not None})
    with pytest.raises(AuthError) as caught:
        verifier.verify(forged)
    assert not isinstance(caught.value, AccessRevoked)
    assert str(caught.value).startswith("invalid token")
