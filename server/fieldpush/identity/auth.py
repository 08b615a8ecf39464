"""Tokens: verify the JWTs phones and dispatchers present; mint development ones.

docs/protocol.md section 4: claims ``sub``, ``role``, ``teams``, ``exp``; ``iss`` and
``aud`` checked when configured; HS256 with a shared secret or RS256/ES256 with
public keys by ``kid``. ``exp`` and ``sub`` are required. Only the configured
algorithms are accepted: never ``none``, and an HMAC check never uses a public
key (each algorithm family has its own key source).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeGuard

import jwt

from fieldpush.errors import AuthError, ConfigError
from fieldpush.settings import Settings
from fieldpush_client.protocol import is_channel

__all__ = ["MAX_TOKEN_ID_LENGTH", "ROLES", "Identity", "TokenVerifier", "mint_token"]

log = logging.getLogger("fieldpush.auth")

ROLES: Final = frozenset({"sales", "after_sales", "supervisor", "admin", "dispatcher", "service"})
_CACHE_SIZE: Final = 4096
#: Clock skew allowed for ``exp`` and ``nbf``.
_LEEWAY_S: Final = 5
#: ``exp``, ``nbf`` and ``iat`` are integers of seconds in ``[0, 2**53)``.
_MAX_TIME: Final = 2**53
#: The longest ``jti`` accepted (a UUID is 36).
MAX_TOKEN_ID_LENGTH: Final = 200
#: The base64url alphabet, no padding (RFC 7515 section 2).
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    user: str
    role: str
    teams: frozenset[str]
    expires_at: float
    #: The token's ``iat`` (seconds), if it has one.
    issued_at: int | None = None
    #: The token's ``jti``, if it has one (what ``POST /v1/admin/tokens/revoke`` names).
    token_id: str | None = None


class AccessCheck(Protocol):
    """What a verified token must also pass (:class:`fieldpush.identity.access.AccessList`)."""

    def check(self, identity: Identity) -> Identity:
        """The identity as it may act; raises :class:`AccessRevoked` if it may not."""


class TokenVerifier:
    """Verifies tokens against the configured keys.

    Verified tokens are cached (bounded, least recently used first out) so that
    a dispatcher publishing hundreds of events per second with one token pays
    for the signature check once; expiry is still checked on every use.
    """

    def __init__(self, settings: Settings, access: AccessCheck | None = None) -> None:
        #: Asked about every token accepted (disabled users, revoked tokens).
        self._access = access
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
        """The identity of a valid token, as the access check lets it act;
        raises :class:`AuthError` otherwise (:class:`AccessRevoked` when the
        token is valid but its user is disabled or it is revoked)."""
        if not token:
            raise AuthError("no token")
        identity = self._cache.get(token)
        if identity is None:
            try:
                identity = self._decode(token)
            except AuthError:
                raise
            except Exception:  # fail closed: a token that breaks the parser is refused
                log.warning("token refused: it broke the verifier", exc_info=True)
                raise AuthError("invalid token") from None
            self._cache[token] = identity
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        if identity.expires_at + _LEEWAY_S <= time.time():
            self._cache.pop(token, None)
            raise AuthError("token expired")
        return identity if self._access is None else self._access.check(identity)

    def _decode(self, token: str) -> Identity:
        """Every segment canonical base64url, the header's ``alg`` (and ``kid``)
        configured, the signature valid, the claims valid; else :class:`AuthError`."""
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError("malformed token: expected three dot-separated parts")
        for part in parts:
            _b64decode(part)  # canonical (RFC 7515): PyJWT alone would accept more
        header = _json_segment(parts[0], "header")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthError(f"token algorithm {_shown(algorithm)} is not accepted")
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
        signing_input = f"{header}.{payload}".encode("ascii")  # checked canonical
        given = _b64decode(signature)
        expected = hmac.new(self._secret, signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise AuthError("invalid token: signature verification failed")
        return _json_segment(payload, "payload")

    def _verify_public_key(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        """RS256/ES256 through PyJWT, with the key of the token's ``kid``; only
        the signature: the claims are checked by :meth:`_identity` for every
        algorithm alike."""
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._public_keys:
            raise AuthError(f"unknown key id {_shown(kid)}")
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
        except jwt.InvalidSignatureError:
            raise AuthError("invalid token: signature verification failed") from None
        except jwt.PyJWTError:  # its messages may show object reprs: a fixed text instead
            raise AuthError("invalid token: it could not be decoded") from None
        if not isinstance(claims, dict):
            raise AuthError("malformed token: the payload is not a JSON object")
        return claims

    def _identity(self, claims: dict[str, Any]) -> Identity:
        """Check the claims (docs/protocol.md section 4) and build the identity."""
        now = time.time()
        expires = claims.get("exp")
        if not _is_time(expires):
            raise AuthError("invalid token: 'exp' is required and must be an integer time")
        if expires + _LEEWAY_S <= now:
            raise AuthError("token expired")
        not_before = claims.get("nbf")
        if not_before is not None:
            if not _is_time(not_before):
                raise AuthError("invalid token: 'nbf' must be an integer time")
            if not_before - _LEEWAY_S > now:
                raise AuthError("token not valid yet")
        issued_at = claims.get("iat")
        if issued_at is not None and not _is_time(issued_at):
            raise AuthError("invalid token: 'iat' must be an integer time")
        token_id = claims.get("jti")
        if token_id is not None and not (
            isinstance(token_id, str) and 0 < len(token_id) <= MAX_TOKEN_ID_LENGTH
        ):
            raise AuthError(
                f"invalid token: 'jti' must be a string of 1 to {MAX_TOKEN_ID_LENGTH} characters"
            )
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
        if not isinstance(role, str) or role not in ROLES:
            raise AuthError(f"invalid token: unknown role {_shown(role)}")
        if not isinstance(teams, list) or not all(
            isinstance(t, str) and is_channel(f"team:{t}") for t in teams
        ):
            raise AuthError("invalid token: 'teams' must be a list of valid team ids")
        return Identity(
            user=user,
            role=role,
            teams=frozenset(teams),
            expires_at=float(expires),
            issued_at=issued_at,
            token_id=token_id,
        )


def _is_time(value: object) -> TypeGuard[int]:
    """A NumericDate as fieldpush takes it: an integer (not a bool, float or
    NaN) of seconds in ``[0, 2**53)``."""
    return type(value) is int and 0 <= value < _MAX_TIME


def _shown(value: object) -> str:
    """A header or claim value for a refusal reason: short printable strings
    quoted, anything else as its type only (never a repr of an object)."""
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return "(missing)" if value is None else f"(a {type(value).__name__})"


def _b64decode(segment: str) -> bytes:
    """Canonical base64url without padding (RFC 7515 section 2): only the
    ``A-Za-z0-9-_`` alphabet, no ``=``, unused trailing bits zero, so each
    token has exactly one spelling. Raises :class:`AuthError`."""
    if _BASE64URL.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise AuthError("malformed token: bad base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise AuthError("malformed token: bad base64url (not canonical)")
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment), parse_constant=_no_constant)
    except (ValueError, RecursionError):
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
    """A signed HS256 token with the configured secret (development and tests),
    with ``iat`` and a random ``jti`` (so it can be revoked alone)."""
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
        "jti": str(uuid.uuid4()),
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.reveal(), algorithm="HS256")
