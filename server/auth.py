"""Tokens: verify the JWTs phones and dispatchers present; mint development ones.

PROTOCOL.md section 4: claims ``sub``, ``role``, ``teams``, ``exp``; ``iss`` and
``aud`` checked when configured; HS256 with a shared secret or RS256/ES256 with
public keys by ``kid``. ``exp`` and ``sub`` are required. Only the configured
algorithms are accepted: never ``none``, and an HMAC check never uses a public
key (each algorithm family has its own key source).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import jwt

from server.errors import AuthError, ConfigError
from server.settings import Settings

__all__ = ["ROLES", "Identity", "TokenVerifier", "mint_token"]

ROLES: Final = frozenset({"sales", "after_sales", "supervisor", "admin", "dispatcher", "service"})
_CACHE_SIZE: Final = 4096


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
        self._secret = settings.jwt_secret.reveal()
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
        if identity.expires_at <= time.time():
            self._cache.pop(token, None)
            raise AuthError("token expired")
        return identity

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise AuthError(f"token algorithm {algorithm!r} is not accepted")
        if algorithm == "HS256":
            return self._secret, ["HS256"]
        kid = header.get("kid")
        if kid not in self._public_keys:
            raise AuthError(f"unknown key id {kid!r}")
        return self._public_keys[kid], [algorithm]

    def _decode(self, token: str) -> Identity:
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        user, role, teams = claims.get("sub"), claims.get("role"), claims.get("teams", [])
        if not isinstance(user, str) or not user:
            raise AuthError("invalid token: 'sub' must be a non-empty string")
        if role not in ROLES:
            raise AuthError(f"invalid token: unknown role {role!r}")
        if not isinstance(teams, list) or not all(isinstance(t, str) and t for t in teams):
            raise AuthError("invalid token: 'teams' must be a list of team ids")
        return Identity(
            user=user, role=role, teams=frozenset(teams), expires_at=float(claims["exp"])
        )


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
