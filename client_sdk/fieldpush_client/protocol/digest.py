"""Drift digests: what a phone holds, summed so that two sides can compare it
cheaply (docs/protocol.md 3.8, docs/sync.md "Data drift"). Pure.

A record's **hash** is the first 8 bytes, big-endian, of
SHA-256(UTF-8 rid, a zero byte, the :func:`canonical` JSON of the record's
core fields as the reader holds them, in its names). Its **bucket** is the
first byte of SHA-256(UTF-8 rid): stable while the record changes. A set of
records is summed as its ``count`` and the sum of their hashes modulo 2**64
(:class:`Digest`): order-independent, and incremental (add a record's hash
when it is stored, subtract it when it goes). On the wire a sum is 16
lowercase hex digits (JSON numbers do not carry 64 bits everywhere).

:func:`parse_digest` and :func:`parse_repair` check what a client sends
(``pull.digest``, ``pull.repair``) and raise ValueError, with what is wrong,
for anything else: the server answers that ``bad_request``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

__all__ = [
    "BUCKETS",
    "MAX_DIGEST_COUNT",
    "MAX_DIGEST_TYPES",
    "MAX_REPAIR_HELD",
    "Digest",
    "DriftReport",
    "Repair",
    "TypeDrift",
    "bucket_of",
    "canonical",
    "parse_digest",
    "parse_repair",
    "record_hash",
]

#: Buckets of a record type (the first byte of SHA-256 of the rid).
BUCKETS: Final = 256
#: Record types one ``digest`` or ``repair`` may name.
MAX_DIGEST_TYPES: Final = 64
#: The largest ``count`` a digest may report for one type.
MAX_DIGEST_COUNT: Final = 10**9
#: ``(rid, hash)`` pairs one ``repair`` may list, all types together.
MAX_REPAIR_HELD: Final = 2000
_MASK: Final = (1 << 64) - 1
_MAX_ID: Final = 200


def canonical(value: Any) -> str:
    """``value`` as canonical JSON (RFC 8785, JCS): object keys sorted, no
    whitespace, strings escaped only where JSON must (``"``, ``\\``, controls),
    numbers as ECMAScript prints them (``1.0`` is ``1``, ``1e21`` is
    ``1e+21``). TypeError for what JSON cannot carry (NaN, infinities, bytes)."""
    if _plain(value):  # the common case, through the C encoder: the same text
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return _jcs(value)


def _jcs(value: Any) -> str:
    """:func:`canonical`, written out (for floats and keys beyond U+D7FF)."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: _utf16(item[0]))
        return "{" + ",".join(f"{_string(k)}:{_jcs(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jcs(item) for item in value) + "]"
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _plain(value: Any) -> bool:
    """No floats, and object keys that sort the same by code point as by
    UTF-16 code unit (none at or above U+D800): ``json.dumps`` writes RFC 8785.
    Exact types only (what JSON and msgpack decode to); anything else takes
    the slow path of :func:`canonical`."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key, default="") < "\ud800"):
                return False
            if not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(map(_plain, value))
    return False


def _utf16(key: object) -> bytes:
    if not isinstance(key, str):
        raise TypeError("object keys must be strings")
    return key.encode("utf-16-be", "surrogatepass")


def _string(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def _number(value: float) -> str:
    """ECMAScript's Number::toString of a finite float."""
    if not math.isfinite(value):
        raise TypeError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    k, n = len(digits), int(exponent) + len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


def record_hash(rid: str, fields: dict[str, Any]) -> int:
    """The hash of record ``rid`` holding ``fields`` (see the module docstring)."""
    data = rid.encode() + b"\x00" + canonical(fields).encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def bucket_of(rid: str) -> int:
    """The bucket of record ``rid``: 0 to :data:`BUCKETS` - 1."""
    return hashlib.sha256(rid.encode()).digest()[0]


@dataclass(frozen=True, slots=True)
class Digest:
    """A set of records summed: how many, and their hashes' sum mod 2**64."""

    count: int = 0
    sum: int = 0

    def add(self, hashed: int) -> Digest:
        return Digest(self.count + 1, (self.sum + hashed) & _MASK)

    def remove(self, hashed: int) -> Digest:
        return Digest(self.count - 1, (self.sum - hashed) & _MASK)

    @property
    def hex(self) -> str:
        return f"{self.sum:016x}"

    def to_wire(self) -> dict[str, Any]:
        return {"count": self.count, "hash": self.hex}


@dataclass(frozen=True, slots=True)
class Repair:
    """What a phone holds of the ``buckets`` of one record type that differed:
    each record's hash by rid."""

    buckets: frozenset[int]
    held: dict[str, int]


def _is_hash(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value)
    )


def _is_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_ID


def _types_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(_is_id(name) for name in value):
        raise ValueError(f"{what} must be an object of record types")
    if len(value) > MAX_DIGEST_TYPES:
        raise ValueError(f"{what} may name at most {MAX_DIGEST_TYPES} record types")
    return value


def parse_digest(value: object) -> dict[str, Digest] | None:
    """``pull.digest``: ``{type: {"count": n, "hash": "16 hex"}}`` (None: absent)."""
    if value is None:
        return None
    parsed: dict[str, Digest] = {}
    for name, item in _types_object(value, "'digest'").items():
        if not (isinstance(item, dict) and item.keys() == {"count", "hash"}):
            raise ValueError(f'\'digest\' of {name!r} must be {{"count": n, "hash": "..."}}')
        count, hashed = item["count"], item["hash"]
        if not (
            isinstance(count, int)
            and not isinstance(count, bool)
            and 0 <= count <= MAX_DIGEST_COUNT
        ):
            raise ValueError(f"'digest' count of {name!r} must be 0 to {MAX_DIGEST_COUNT}")
        if not _is_hash(hashed):
            raise ValueError(f"'digest' hash of {name!r} must be 16 lowercase hex digits")
        parsed[name] = Digest(count, int(hashed, 16))
    return parsed


def parse_repair(value: object) -> dict[str, Repair] | None:
    """``pull.repair``: ``{type: {"buckets": [b, ...], "held": {rid: "16 hex"}}}``
    (None: absent); at most :data:`MAX_REPAIR_HELD` held records in all."""
    if value is None:
        return None
    parsed: dict[str, Repair] = {}
    held_total = 0
    for name, item in _types_object(value, "'repair'").items():
        if not (isinstance(item, dict) and item.keys() == {"buckets", "held"}):
            raise ValueError(f'\'repair\' of {name!r} must be {{"buckets": [...], "held": {{}}}}')
        buckets, held = item["buckets"], item["held"]
        if not (
            isinstance(buckets, list)
            and 0 < len(buckets) <= BUCKETS
            and all(
                isinstance(b, int) and not isinstance(b, bool) and 0 <= b < BUCKETS for b in buckets
            )
        ):
            raise ValueError(f"'repair' buckets of {name!r} must be 1 to {BUCKETS} of 0..255")
        if not isinstance(held, dict):
            raise ValueError(f"'repair' held of {name!r} must be an object of rids")
        held_total += len(held)
        if held_total > MAX_REPAIR_HELD:
            raise ValueError(f"'repair' may list at most {MAX_REPAIR_HELD} held records")
        chosen = frozenset(buckets)
        if not all(
            _is_id(rid) and _is_hash(h) and bucket_of(rid) in chosen for rid, h in held.items()
        ):
            raise ValueError(
                f"'repair' held of {name!r} must map rids of those buckets to 16 hex digits"
            )
        parsed[name] = Repair(chosen, {rid: int(h, 16) for rid, h in held.items()})
    return parsed


@dataclass(frozen=True, slots=True)
class TypeDrift:
    """A record type whose digest differed: the server's digest of what the
    reader should hold, and per non-empty bucket its digest."""

    total: Digest
    buckets: dict[int, Digest]

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.total.to_wire(),
            "buckets": {str(b): [d.count, d.hex] for b, d in sorted(self.buckets.items())},
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> TypeDrift:
        """ValueError / TypeError / KeyError for anything :meth:`to_wire` does not make."""
        return cls(
            _digest_of(item["count"], item["hash"]),
            {_bucket(key): _digest_of(*pair) for key, pair in dict(item["buckets"]).items()},
        )


@dataclass(frozen=True, slots=True)
class DriftReport:
    """``changes.drift``: the record types whose digests were compared, and
    those of them that differed."""

    compared: tuple[str, ...]
    differs: dict[str, TypeDrift]

    def to_wire(self) -> dict[str, Any]:
        return {
            "compared": list(self.compared),
            "differs": {name: drift.to_wire() for name, drift in self.differs.items()},
        }

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> DriftReport:
        """ValueError / TypeError / KeyError for anything :meth:`to_wire` does not make."""
        compared = item["compared"]
        if not (isinstance(compared, list) and all(isinstance(n, str) for n in compared)):
            raise TypeError("'compared'")
        differs = {str(n): TypeDrift.from_wire(d) for n, d in dict(item["differs"]).items()}
        return cls(tuple(compared), differs)


def _digest_of(count: object, hashed: object) -> Digest:
    if not (isinstance(count, int) and not isinstance(count, bool) and count >= 0):
        raise ValueError("a digest's count")
    if not _is_hash(hashed):
        raise ValueError("a digest's hash")
    return Digest(count, int(str(hashed), 16))


def _bucket(key: object) -> int:
    bucket = int(str(key))
    if not 0 <= bucket < BUCKETS:
        raise ValueError("a bucket")
    return bucket
