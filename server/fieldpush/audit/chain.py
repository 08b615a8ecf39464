"""Audit entries and their hash chain (pure: no I/O, no clock).

An entry is ``{seq, ts, actor, role, device, action, target, fields, outcome,
prev, hash}``:

- ``seq``: 1, 2, 3, ... without holes; the trail's size is the last ``seq``;
- ``ts``: milliseconds since the epoch (an integer), when the node recorded it;
- ``actor``, ``role``, ``device``: who acted (``role`` and ``device`` may be
  ``""`` when there is none, e.g. a service token);
- ``action``: what was done (``account.disable``, ``sync.write``, ...);
- ``target``: what it was done to (``user/ann``, ``customer/c-17``);
- ``fields``: ``{name: [old, new]}``, the values that changed (or would have);
- ``outcome``: ``ok``, ``applied``, ``conflict`` or ``refused:<reason>``;
- ``prev``: the previous entry's ``hash`` (:data:`GENESIS` for ``seq`` 1);
- ``hash``: ``sha256(bytes.fromhex(prev) + canonical(entry without "hash"))``,
  64 lowercase hex digits.

**Canonical bytes** (:func:`canonical`): JSON with keys sorted, no whitespace
(``,`` and ``:`` separators), every non-ASCII character escaped as ``\\uXXXX``
(lowercase hex; surrogate pairs beyond the BMP), so the bytes are ASCII and
thus UTF-8; the short escapes ``\\" \\\\ \\n \\r \\t \\b \\f`` and ``\\u00XX``
for other control characters. That is Python's ``json.dumps(sort_keys=True,
separators=(",", ":"))``. Numbers are integers only: a float in a recorded
value is stored as its shortest ``repr`` string (``12.5`` -> ``"12.5"``),
because float formatting differs between languages and a verifier written in
another one must reproduce the bytes exactly.

Guarantee: :func:`chain` is the only way entries are made; given the head it
starts from, it is deterministic, so whoever holds the head can recompute
(and so verify) every hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from fieldpush.errors import FieldpushError

__all__ = [
    "GENESIS",
    "AuditDraft",
    "AuditEntry",
    "ChainError",
    "Head",
    "Json",
    "Unreadable",
    "canonical",
    "chain",
    "entry_hash",
    "entry_of",
    "normalize",
    "parse_entry",
]

#: The ``prev`` of entry 1.
GENESIS: Final = "0" * 64

#: A recorded value after :func:`normalize`.
Json: TypeAlias = bool | int | str | list["Json"] | dict[str, "Json"] | None

#: How deep a recorded value may nest (deeper parts are stored as their repr).
MAX_DEPTH: Final = 16

_KEYS: Final = frozenset(
    [
        *("seq", "ts", "actor", "role", "device", "action", "target"),
        *("fields", "outcome", "prev", "hash"),
    ]
)


class ChainError(FieldpushError):
    """An entry that is malformed or does not follow its predecessor; ``seq``
    is the first bad entry's (or the line's position when it has none)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


def normalize(value: object, depth: int = 0) -> Json:
    """``value`` as canonical JSON allows: floats (and anything else that is not
    JSON) become strings, tuples lists, keys strings; nesting beyond
    :data:`MAX_DEPTH` becomes a string."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if depth >= MAX_DEPTH:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): normalize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize(v, depth + 1) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """What a node records; the writer gives it ``seq``, ``prev`` and ``hash``."""

    ts: int
    actor: str
    action: str
    target: str
    outcome: str
    role: str = ""
    device: str = ""
    #: ``{name: (old, new)}``; values are normalized by :func:`chain`.
    fields: Mapping[str, tuple[object, object]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Head:
    """The end of a trail: its size (the last ``seq``, 0 when empty) and the
    last entry's hash (:data:`GENESIS` when empty)."""

    size: int = 0
    hash: str = GENESIS


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A chained entry; :attr:`line` is its stored form (canonical JSON with the hash)."""

    seq: int
    ts: int
    actor: str
    role: str
    device: str
    action: str
    target: str
    fields: dict[str, Json]
    outcome: str
    prev: str
    hash: str

    def body(self) -> dict[str, Json]:
        """The entry as JSON, without ``hash``."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "role": self.role,
            "device": self.device,
            "action": self.action,
            "target": self.target,
            "fields": self.fields,
            "outcome": self.outcome,
            "prev": self.prev,
        }

    def as_dict(self) -> dict[str, Json]:
        return {**self.body(), "hash": self.hash}

    @property
    def line(self) -> str:
        """The stored and exported form: canonical JSON, ``hash`` included."""
        return canonical(self.as_dict()).decode("ascii")

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)


def canonical(value: Mapping[str, Json]) -> bytes:
    """The canonical bytes of ``value`` (module docstring)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def entry_hash(prev: str, body: Mapping[str, Json]) -> str:
    """``sha256(bytes.fromhex(prev) + canonical(body))`` in hex."""
    return hashlib.sha256(bytes.fromhex(prev) + canonical(body)).hexdigest()


def chain(head: Head, drafts: list[AuditDraft]) -> list[AuditEntry]:
    """The entries that follow ``head``, one per draft, in order."""
    entries: list[AuditEntry] = []
    seq, prev = head.size, head.hash
    for draft in drafts:
        seq += 1
        fields: dict[str, Json] = {
            str(name): [normalize(old, 1), normalize(new, 1)]
            for name, (old, new) in draft.fields.items()
        }
        partial = AuditEntry(
            seq=seq,
            ts=int(draft.ts),
            actor=draft.actor,
            role=draft.role,
            device=draft.device,
            action=draft.action,
            target=draft.target,
            fields=fields,
            outcome=draft.outcome,
            prev=prev,
            hash="",
        )
        prev = entry_hash(prev, partial.body())
        entries.append(
            AuditEntry(
                seq, partial.ts, partial.actor, partial.role, partial.device, partial.action,
                partial.target, fields, partial.outcome, partial.prev, prev,
            )
        )  # fmt: skip
    return entries


def _str(raw: dict[str, object], key: str, seq: int) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ChainError(seq, f"{key!r} is not a string")
    return value


def _int(raw: dict[str, object], key: str, seq: int) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChainError(seq, f"{key!r} is not a non-negative integer")
    return value


def _hex(raw: dict[str, object], key: str, seq: int) -> str:
    value = _str(raw, key, seq)
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ChainError(seq, f"{key!r} is not 64 lowercase hex digits")
    return value


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored line that is not an entry at its place: edited, planted or
    moved outside fieldpush. A store answers it in its place rather than
    failing the read, so that the trail can still be read and exported, and
    the verifier names its ``seq``; ``line`` is the stored text as is."""

    seq: int
    line: str
    why: str

    def as_dict(self) -> dict[str, Json]:
        return {"seq": self.seq, "unreadable": self.line, "why": self.why}


def entry_of(raw: object, expected: int) -> AuditEntry:
    """The entry ``raw`` (parsed JSON) if it is well formed, with ``seq``
    ``expected``; raises :class:`ChainError` otherwise (its linkage to other
    entries is :func:`parse_entry`'s job)."""
    if not isinstance(raw, dict):
        raise ChainError(expected, "not a JSON object")
    if set(raw) != _KEYS:
        raise ChainError(expected, "not the keys of an audit entry")
    seq = _int(raw, "seq", expected)
    fields = raw.get("fields")
    if not isinstance(fields, dict) or not all(
        isinstance(v, list) and len(v) == 2 for v in fields.values()
    ):
        raise ChainError(expected, "'fields' is not {name: [old, new]}")
    entry = AuditEntry(
        seq=seq,
        ts=_int(raw, "ts", expected),
        actor=_str(raw, "actor", expected),
        role=_str(raw, "role", expected),
        device=_str(raw, "device", expected),
        action=_str(raw, "action", expected),
        target=_str(raw, "target", expected),
        fields=fields,
        outcome=_str(raw, "outcome", expected),
        prev=_hex(raw, "prev", expected),
        hash=_hex(raw, "hash", expected),
    )
    if seq != expected:
        raise ChainError(expected, f"seq {seq} found (an entry is missing or out of order)")
    return entry


def parse_entry(raw: object, after: Head) -> AuditEntry:
    """The entry ``raw`` (parsed JSON) if it is well formed and follows ``after``
    (its ``seq``, ``prev`` and its own ``hash`` recomputed); raises
    :class:`ChainError` naming the seq it should have had otherwise."""
    expected = after.size + 1
    entry = entry_of(raw, expected)
    if entry.prev != after.hash:
        raise ChainError(expected, "'prev' is not the previous entry's hash")
    try:
        recomputed = entry_hash(entry.prev, entry.body())
    except (TypeError, ValueError, RecursionError) as exc:  # NaN, too deep: not canonical
        raise ChainError(expected, "a value canonical JSON does not allow") from exc
    if recomputed != entry.hash:
        raise ChainError(expected, "the hash does not match the entry (edited)")
    return entry
