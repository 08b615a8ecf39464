"""Tokens: verify the JWTs phones and dispatchers present; mint development ones.

docs/protocol.md section 4: claims ``sub``, ``role``, ``teams``, ``exp``; ``iss`` and
``aud`` checked when configured; HS256 with a shared secret or RS256/ES256 with
public keys by ``kid``. ``exp`` and ``sub`` are required. Only the configured
algorithms are accepted: never ``none``, and an HMAC check never uses a public
key (each algorithm family has its own key source).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import jwt

from fieldpush.errors import AuthError, ConfigError
from fieldpush.settings import Settings
from fieldpush_client.protocol import is_channel

__all__ = ["ROLES", "Identity", "TokenVerifier", "mint_token"]

ROLES: Final = frozenset({"sales", "after_sales", "supervisor", "admin", "dispatcher", "service"})
_CACHE_SIZE: Final = 4096
#: Clock skew allowed for ``exp`` and ``nbf``.
_LEEWAY_S: Final = 5


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    user: str
    role: str
    teams: frozenset[str]
    expires_at: float


class TokenVerifier:
    """Verifies tokens against the configured keys.

    Verified tokens are cached (bounded, least recently used first out) so that
    a dispatcher publishing hundreds of events per second with one token pays
    for the signature check once; expiry is still checked on every use.
    """

    def __init__(self, settings: Settings) -> None:
        self._algorithms = list(settings.jwt_algorithms)
        self._secret = settings.jwt_secret.reveal().encode()
        self._public_keys: dict[str, Any] = {}
        for kid, path in settings.jwt_public_keys.items():
            try:
                with open(path, "rb") as file:
                    pem = file.read()
            except OSError as exc:
                raise ConfigError(
                    f"jwt_public_keys: cannot read key {kid!r} at {path}: {exc.strerror}"
                ) from None
            self._public_keys[kid] = pem
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._cache: OrderedDict[str, Identity] = OrderedDict()

    def verify(self, token: str | None) -> Identity:
        """The identity of a valid token; raises :class:`AuthError` otherwise."""
        if not token:
            raise AuthError("no token")
        identity = self._cache.get(token)
        if identity is None:
            identity = self._decode(token)
            self._cache[token] = identity
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        if identity.expires_at + _LEEWAY_S <= time.time():
            self._cache.pop(token, None)
            raise AuthError("token expired")
        return identity

    def _decode(self, token: str) -> Identity:
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError("malformed token: expected three dot-separated parts")
        header = _json_segment(parts[0], "header")
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise AuthError(f"token algorithm {algorithm!r} is not accepted")
        if "crit" in header:
            raise AuthError("invalid token: critical header parameters are not supported")
        if algorithm == "HS256":
            claims = self._verify_hs256(*parts)
        else:
            claims = self._verify_public_key(token, header)
        return self._identity(claims)

    def _verify_hs256(self, header: str, payload: str, signature: str) -> dict[str, Any]:
        """HMAC-SHA256 over ``header.payload``, compared in constant time.

        Done here rather than by PyJWT: it is on every handshake, and PyJWT's
        generic path (key preparation, double header parsing) cost about a
        fifth of a handshake's CPU."""
        try:
            signing_input = f"{header}.{payload}".encode("ascii")
            given = _b64decode(signature)
        except (UnicodeEncodeError, ValueError):
            raise AuthError("malformed token: bad base64url") from None
        expected = hmac.new(self._secret, signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise AuthError("invalid token: signature verification failed")
        return _json_segment(payload, "payload")

    def _verify_public_key(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        """RS256/ES256 through PyJWT, with the key of the token's ``kid``; only
        the signature: the claims are checked by :meth:`_identity` for every
        algorithm alike."""
        kid = header.get("kid")
        if kid not in self._public_keys:
            raise AuthError(f"unknown key id {kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_keys[kid],
                algorithms=[header["alg"]],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        """Check the claims (docs/protocol.md section 4) and build the identity."""
        now = time.time()
        expires = claims.get("exp")
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise AuthError("invalid token: 'exp' is required and must be a number")
        if expires + _LEEWAY_S <= now:
            raise AuthError("token expired")
        not_before = claims.get("nbf")
        if not_before is not None:
            if isinstance(not_before, bool) or not isinstance(not_before, int | float):
                raise AuthError("invalid token: 'nbf' must be a number")
            if not_before - _LEEWAY_S > now:
                raise AuthError("token not valid yet")
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise AuthError("invalid token: wrong issuer")
        audience = claims.get("aud")
        if self._audience is None:
            if audience is not None:
                raise AuthError("invalid token: it names an audience and none is configured")
        elif not (
            audience == self._audience
            or (isinstance(audience, list) and self._audience in audience)
        ):
            raise AuthError("invalid token: wrong audience")
        user, role, teams = claims.get("sub"), claims.get("role"), claims.get("teams", [])
        if not isinstance(user, str) or not is_channel(f"user:{user}"):
            raise AuthError(
                "invalid token: 'sub' is required: a user id without spaces or "
                "non-printable characters that makes a valid user:<id> channel"
            )
        if role not in ROLES:
            raise AuthError(f"invalid token: unknown role {role!r}")
        if not isinstance(teams, list) or not all(
            isinstance(t, str) and is_channel(f"team:{t}") for t in teams
        ):
            raise AuthError("invalid token: 'teams' must be a list of valid team ids")
        return Identity(user=user, role=role, teams=frozenset(teams), expires_at=float(expires))


def _b64decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2)."""
    if "=" in segment:
        raise ValueError("padding")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (ValueError, binascii.Error):
        raise AuthError(f"malformed token: the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"malformed token: the {what} is not a JSON object")
    return value


def mint_token(
    settings: Settings,
    *,
    user: str,
    role: str,
    teams: list[str] | tuple[str, ...] = (),
    ttl_s: float | None = None,
) -> str:
    """A signed HS256 token with the configured secret (development and tests)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(sorted(ROLES))}")
    if not is_channel(f"user:{user}") or not all(is_channel(f"team:{t}") for t in teams):
        raise ValueError("user and team ids may not be empty or hold spaces or control characters")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user,
        "role": role,
        "teams": list(teams),
        "iat": now,
        "exp": now + int(ttl_s if ttl_s is not None else settings.token_ttl_s),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.reveal(), algorithm="HS256")
