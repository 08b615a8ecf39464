"""The data dictionary: ``config/schema.toml`` (docs/sync.md, "The data dictionary").

:func:`load_schema` reads and checks the file once, at start; a broken file is
refused with :class:`SchemaError` naming the file, the record type, the field
and what is wrong. The result is immutable and pure: validating a value,
deciding who may read or edit what, are functions of it and their arguments.

Access, per record type and role: ``read`` and ``write`` give each role a scope
(``own``: records whose scope field names the user; ``team``: records whose
team field is one of the token's teams; ``all``). A role may edit a field when
it may write the record, except that a ``locked`` field may be edited only by
those of its listed roles that may write the record (the list narrows, never
widens), and an ``mdm`` field only by the CRM (a ``service`` token) once the
record exists. ``create`` and ``delete`` are for roles that may write. A
field's ``read`` list hides it from the other roles.

A schema that grants what can never be done is refused, with the place: a role
in ``create``, ``delete`` or a locked field's ``roles`` without a write scope
on the type, or a creator that could never make a record it may keep (a
required field, its scope field or the team field locked to other roles).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from fieldpush.errors import ConfigError, FieldpushError
from fieldpush.identity.auth import ROLES
from fieldpush.logs import shown
from fieldpush.sync import appendlog
from fieldpush.sync.sniff import SNIFFERS
from fieldpush_client.protocol import BATCH_CLASS, CORE_CLASS, Priority

__all__ = [
    "BATCH",
    "CORE",
    "FIELD_TYPES",
    "FILE_KEYS",
    "FieldSpec",
    "InvalidValue",
    "RecordType",
    "Schema",
    "SchemaError",
    "load_schema",
    "parse_schema",
]

FIELD_TYPES: Final = frozenset(
    {"string", "int", "decimal", "bool", "date", "datetime", "enum", "list", "range", "file"}
)
#: The keys of a ``file`` field's value (docs/attachments.md, "File fields").
FILE_KEYS: Final = frozenset({"id", "sha256", "size", "content_type", "name"})
#: A file name's longest UTF-8 encoding, in bytes.
FILE_NAME_MAX_BYTES: Final = 255
_FILE_ID: Final = re.compile(r"[0-9A-Za-z_-]{1,128}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_MEDIA_TYPE: Final = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
)
#: The largest magnitude of a 64-bit signed integer field, plus one.
_INT_LIMIT: Final = 2**63
RULES: Final = frozenset({"mdm", "lww", "locked", "append"})
#: The two keys of an ``append`` field's edit (docs/sync.md, "Logs that merge").
LOG_EDIT_KEYS: Final = ("add", "remove")
SYNC_CLASSES: Final = frozenset({"realtime", "delta", "poll", "batch"})
#: The sync class whose data is neither pushed nor pulled with the core data
#: (docs/sync.md, "Batch sync class"); every other class is core data. Both
#: are the protocol's names of a pull's data classes (``pull.classes``).
BATCH: Final = BATCH_CLASS
CORE: Final = CORE_CLASS
#: Most urgent first (the order of ``fieldpush_client.protocol.Priority``).
PRIORITIES: Final = tuple(priority.value for priority in Priority)
SCOPES: Final = ("own", "team", "all")


class SchemaError(ConfigError):
    """The schema file is broken; the message names file, record, field and problem."""


class InvalidValue(FieldpushError, ValueError):
    """A field value the schema or a mapping refuses; the message, in plain
    English, names the field, says what it must be and shows the value sent
    (cut, controls escaped: :func:`fieldpush.logs.shown`), and is safe to show
    to the client. Also a ``ValueError``, as the wire codec's errors are."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a record type, as declared in the schema."""

    name: str
    type: str
    rule: str = "lww"
    #: Roles that may edit a ``locked`` field.
    roles: frozenset[str] = frozenset()
    required: bool = False
    pattern: re.Pattern[str] | None = None
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] = ()
    max_length: int | None = None
    items: str = "string"
    sync: str = "delta"
    priority: str = "normal"
    #: Values that make a change of this ``realtime`` field a ``critical`` event.
    critical_values: tuple[Any, ...] = ()
    #: Roles that may read it; None: every role that may read the record.
    read: frozenset[str] | None = None
    #: A ``file`` field's (or list of files') largest file, in bytes.
    max_size: int | None = None
    #: A ``file`` field's allowed media types (empty: any).
    content_types: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """The value as stored (for an ``append`` field: the edit of its log,
        see :meth:`_log_edit`), or InvalidValue saying what is wrong. ``None``
        clears the field (refused for a required one)."""
        if value is None:
            if self.required:
                raise InvalidValue(f"{self.name} is required")
            return None
        if self.rule == "append":
            return self._log_edit(value)
        if self.type == "list":
            return self._items(self.name, value)
        if self.type == "range":
            return _range(self, value)
        checked = _CHECKS[self.type](self, value)
        if isinstance(checked, str):
            if self.max_length is not None and len(checked) > self.max_length:
                raise InvalidValue(
                    f"{self.name} may be at most {self.max_length} characters long, "
                    f"not {len(checked)}"
                )
            if self.pattern is not None and not self.pattern.fullmatch(checked):
                raise InvalidValue(
                    f"{self.name} must match {self.pattern.pattern!r}, not {shown(checked)}"
                )
        self._bounded(self.name, Decimal(checked) if self.type == "decimal" else checked)
        return checked

    def _bounded(self, name: str, number: Any) -> None:
        """InvalidValue when ``number`` is outside ``[min, max]``."""
        if self.min is not None and number < self.min:
            raise InvalidValue(f"{name} must be at least {self.min:g}, not {shown(number)}")
        if self.max is not None and number > self.max:
            raise InvalidValue(f"{name} must be at most {self.max:g}, not {shown(number)}")

    def _items(self, name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise InvalidValue(f"{name} must be a list, not {shown(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidValue(f"{name} may have at most {self.max_length} items, not {len(value)}")
        item = FieldSpec(
            name=f"{self.name}[]",
            type=self.items,
            max_size=self.max_size,
            content_types=self.content_types,
        )
        return [item.check(entry) for entry in value]

    def _log_edit(self, value: Any) -> dict[str, list[Any]]:
        """An ``append`` field's value: a plain list (these items must be
        present) or ``{"add": [...], "remove": [...]}`` (either key may be left
        out; at most ``max_length`` items in each; an item in both is refused),
        as the canonical ``{"add": [...], "remove": [...]}``
        (:mod:`fieldpush.sync.appendlog` merges it)."""
        if isinstance(value, list):
            value = {"add": value}
        if not isinstance(value, dict) or not value or value.keys() - set(LOG_EDIT_KEYS):
            raise InvalidValue(
                f'{self.name} must be a list of items or {{"add": [...], "remove": [...]}}, '
                f"not {shown(value)}"
            )
        edit = {key: self._items(f"{self.name}.{key}", value.get(key, [])) for key in LOG_EDIT_KEYS}
        removed = {appendlog.item_key(item) for item in edit["remove"]}
        both = [item for item in edit["add"] if appendlog.item_key(item) in removed]
        if both:
            raise InvalidValue(f"{self.name}: {sorted(both, key=repr)} both added and removed")
        return edit

    def files(self, value: Any) -> list[dict[str, Any]]:
        """The file references in ``value``, a value of this field as
        :meth:`check` returned it (for an ``append`` field: the ones it adds)."""
        if value is None:
            return []
        if self.type == "file":
            return [value]
        if self.type == "list" and self.items == "file":
            return list(value["add"] if self.rule == "append" else value)
        return []

    def priority_of(self, value: Any) -> str:
        """The priority of the event announcing a change of this field to ``value``."""
        return "critical" if value in self.critical_values else self.priority


def _string(spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{spec.name} must be a string, not {shown(value)}")
    return value


def _int(spec: FieldSpec, value: Any, name: str | None = None) -> int:
    """A 64-bit signed integer: what every stored copy (msgpack, Redis, the
    SDK's SQLite) can hold."""
    name = name or spec.name
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be an integer (a whole number), not {shown(value)}")
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise InvalidValue(
            f"{name} must be an integer between {-_INT_LIMIT} and {_INT_LIMIT - 1}, "
            f"not {shown(value)}"
        )
    return value


def _decimal(spec: FieldSpec, value: Any) -> str:
    """Decimals travel as strings (``"1200.50"``) so no float rounding creeps in."""
    expected = f'{spec.name} must be a decimal number or its text (such as "1200.50")'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidValue(f"{expected}, not {shown(value)}")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):  # ValueError: an int too long for str()
        raise InvalidValue(f"{expected}, not {shown(value)}") from None
    if not number.is_finite():
        raise InvalidValue(f"{spec.name} must be a finite number, not {shown(value)}")
    return str(number)


def _bool(spec: FieldSpec, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"{spec.name} must be true or false, not {shown(value)}")
    return value


def _date(spec: FieldSpec, value: Any) -> str:
    try:
        return dt.date.fromisoformat(_string(spec, value)).isoformat()
    except ValueError:
        raise InvalidValue(f"{spec.name} must be a date YYYY-MM-DD, not {shown(value)}") from None


def _datetime(spec: FieldSpec, value: Any) -> str:
    try:
        moment = dt.datetime.fromisoformat(_string(spec, value))
    except ValueError:
        raise InvalidValue(
            f"{spec.name} must be an ISO 8601 date and time, not {shown(value)}"
        ) from None
    if moment.tzinfo is None:
        raise InvalidValue(
            f"{spec.name} needs a UTC offset (e.g. 2026-05-01T09:30:00+02:00), not {shown(value)}"
        )
    return moment.isoformat()


def _enum(spec: FieldSpec, value: Any) -> Any:
    for allowed in spec.values:
        if type(allowed) is type(value) and allowed == value:  # True is not 1
            return value
    allowed_values = ", ".join(shown(allowed) for allowed in spec.values)
    raise InvalidValue(f"{spec.name} must be one of {allowed_values}, not {shown(value)}")


def _file(spec: FieldSpec, value: Any) -> dict[str, Any]:
    """A reference to an upload (docs/attachments.md, "File fields"):
    exactly the keys of :data:`FILE_KEYS`, each of its type and shape, within
    the field's ``max_size`` and ``content_types``. Whether the upload exists
    and is the sender's is :mod:`fieldpush.sync.attachments`'s to check."""
    name = spec.name
    if not isinstance(value, dict) or value.keys() != FILE_KEYS:
        raise InvalidValue(
            f'{name} must be a file {{"id", "sha256", "size", "content_type", "name"}}, '
            f"not {shown(value)}"
        )
    upload_id, sha256, size = value["id"], value["sha256"], value["size"]
    content_type, file_name = value["content_type"], value["name"]
    if not isinstance(upload_id, str) or not _FILE_ID.fullmatch(upload_id):
        raise InvalidValue(f"{name}.id must be an upload id, not {shown(upload_id)}")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidValue(f"{name}.sha256 must be 64 lower-case hex digits, not {shown(sha256)}")
    size = _int(spec, size, f"{name}.size")
    if size < 0:
        raise InvalidValue(f"{name}.size must not be negative, not {size}")
    if spec.max_size is not None and size > spec.max_size:
        raise InvalidValue(f"{name} may be at most {spec.max_size} bytes, not {size}")
    if not isinstance(content_type, str) or not _MEDIA_TYPE.fullmatch(content_type):
        raise InvalidValue(
            f"{name}.content_type must be a media type such as image/jpeg, "
            f"not {shown(content_type)}"
        )
    if spec.content_types and content_type not in spec.content_types:
        raise InvalidValue(
            f"{name} must be one of {', '.join(spec.content_types)}, not {shown(content_type)}"
        )
    _file_name(name, file_name)
    return {
        "id": upload_id,
        "sha256": sha256,
        "size": size,
        "content_type": content_type,
        "name": file_name,
    }


def _file_name(field_name: str, value: Any) -> None:
    """InvalidValue unless ``value`` is a plain file name: not empty, at most
    :data:`FILE_NAME_MAX_BYTES` bytes of UTF-8, no ``/`` or ``\\``, no
    ``..``, no control characters."""
    where = f"{field_name}.name"
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{where} must be a file name, not {shown(value)}")
    try:
        length = len(value.encode())
    except UnicodeEncodeError:  # a lone surrogate
        raise InvalidValue(f"{where} must be valid Unicode, not {shown(value)}") from None
    if length > FILE_NAME_MAX_BYTES:
        raise InvalidValue(f"{where} may be at most {FILE_NAME_MAX_BYTES} bytes long, not {length}")
    if "/" in value or "\\" in value or ".." in value:
        raise InvalidValue(
            f"{where} must be a plain file name (no /, \\ or ..), not {shown(value)}"
        )
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in value):
        raise InvalidValue(f"{where} must not hold control characters, not {shown(value)}")


def _range(spec: FieldSpec, value: Any) -> dict[str, int]:
    """A range of whole numbers ``{"min": low, "max": high}``: both integers
    within the field's ``min`` / ``max``, ``low <= high``; nothing else in it."""
    if not isinstance(value, dict) or value.keys() != {"min", "max"}:
        raise InvalidValue(
            f'{spec.name} must be a range {{"min": low, "max": high}} of whole numbers, '
            f"not {shown(value)}"
        )
    low = _int(spec, value["min"], f"{spec.name}.min")
    high = _int(spec, value["max"], f"{spec.name}.max")
    spec._bounded(f"{spec.name}.min", low)
    spec._bounded(f"{spec.name}.max", high)
    if low > high:
        raise InvalidValue(f"{spec.name}: min ({low}) must not be greater than max ({high})")
    return {"min": low, "max": high}


_CHECKS: Final[dict[str, Callable[[FieldSpec, Any], Any]]] = {
    "string": _string,
    "int": _int,
    "decimal": _decimal,
    "bool": _bool,
    "date": _date,
    "datetime": _datetime,
    "enum": _enum,
    "file": _file,
}


@dataclass(frozen=True, slots=True)
class RecordType:
    """A record type: its fields, scope, sync class and who may do what."""

    name: str
    fields: Mapping[str, FieldSpec]
    #: The field naming the user a record belongs to (``own`` access).
    scope: str
    #: The field naming the record's team (``team`` access), if any.
    team: str | None = None
    sync: str = "delta"
    #: For ``sync = "poll"``: how often phones pull it (seconds).
    poll_s: float | None = None
    #: For a type of ``sync = "batch"`` or with batch fields: how often phones
    #: pull its batch data (seconds).
    batch_s: float | None = None
    read: Mapping[str, str] = field(default_factory=dict)
    write: Mapping[str, str] = field(default_factory=dict)
    create: frozenset[str] = frozenset()
    delete: frozenset[str] = frozenset()

    def reaches(
        self, scope: str | None, user: str, teams: frozenset[str], owner: Any, team: Any
    ) -> bool:
        """Whether a scope (``own``/``team``/``all``) covers a record owned by
        ``owner`` in ``team`` for ``user`` with ``teams``."""
        if scope == "all":
            return True
        if scope == "own":
            return owner is not None and owner == user
        if scope == "team":
            return team is not None and team in teams
        return False

    def class_of(self, name: str) -> str:
        """The data class of field ``name``: :data:`BATCH` or :data:`CORE`."""
        return BATCH if self.fields[name].sync == BATCH else CORE

    def fields_of(self, classes: frozenset[str]) -> frozenset[str]:
        """The fields whose data class is one of ``classes``."""
        return frozenset(name for name in self.fields if self.class_of(name) in classes)

    @property
    def file_fields(self) -> frozenset[str]:
        """Its ``file`` fields and lists of files."""
        return frozenset(
            name
            for name, spec in self.fields.items()
            if spec.type == "file" or (spec.type == "list" and spec.items == "file")
        )

    def readable_fields(self, role: str) -> frozenset[str]:
        return frozenset(
            name for name, spec in self.fields.items() if spec.read is None or role in spec.read
        )


@dataclass(frozen=True, slots=True)
class Schema:
    types: Mapping[str, RecordType]
    path: str = "<schema>"

    def poll_intervals(self) -> dict[str, float]:
        """``welcome.poll`` entries of the record types of the ``poll`` sync class."""
        return {t.name: t.poll_s for t in self.types.values() if t.poll_s is not None}

    def batch_interval(self) -> float | None:
        """``welcome.poll.batch``: how often phones pull batch data, the
        shortest ``batch_s`` of the schema (None: there is no batch data)."""
        intervals = [t.batch_s for t in self.types.values() if t.batch_s is not None]
        return min(intervals) if intervals else None


# ---------------------------------------------------------------- loading

_TYPE_KEYS: Final = frozenset(
    {"scope", "team", "sync", "poll_s", "batch_s", "read", "write", "create", "delete", "fields"}
)
_FIELD_KEYS: Final = frozenset(
    {
        "type",
        "rule",
        "roles",
        "required",
        "pattern",
        "min",
        "max",
        "values",
        "max_length",
        "items",
        "sync",
        "priority",
        "critical_values",
        "read",
        "description",
        "max_size",
        "content_types",
    }
)


class _Where:
    """Builds SchemaError messages: ``<file>: <type>.<field>: <problem>``."""

    def __init__(self, path: str, *parts: str) -> None:
        self.path = path
        self.parts = parts

    def error(self, problem: str) -> SchemaError:
        where = ".".join(self.parts)
        return SchemaError(
            f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}"
        )


def _roles(value: Any, where: _Where, key: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise where.error(f"{key} must be a list of roles")
    unknown = set(value) - ROLES
    if unknown:
        raise where.error(f"{key}: unknown role(s) {sorted(unknown)}; roles are {sorted(ROLES)}")
    return frozenset(value)


def _scopes(value: Any, where: _Where, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise where.error(f'{key} must be a table role = "own" | "team" | "all"')
    _roles(list(value), where, key)
    for role, scope in value.items():
        if scope not in SCOPES:
            raise where.error(f"{key}.{role} must be one of {list(SCOPES)}, not {scope!r}")
    return dict(value)


def _number(value: Any, where: _Where, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(f"{key} must be a number")
    return float(value)


def _field(name: str, raw: Any, type_sync: str, where: _Where) -> FieldSpec:
    if not isinstance(raw, dict):
        raise where.error("must be a table")
    unknown = raw.keys() - _FIELD_KEYS
    if unknown:
        raise where.error(f"unknown key(s) {sorted(unknown)}; known: {sorted(_FIELD_KEYS)}")
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        raise where.error(f"type must be one of {sorted(FIELD_TYPES)}, not {kind!r}")
    rule = raw.get("rule", "lww")
    if rule not in RULES:
        raise where.error(f"rule must be one of {sorted(RULES)}, not {rule!r}")
    roles = _roles(raw.get("roles", []), where, "roles")
    if rule == "locked" and not roles:
        raise where.error("a locked field needs roles = [...] (who may edit it)")
    if rule != "locked" and roles:
        raise where.error('roles is only for rule = "locked"')
    if rule == "append" and kind != "list":
        raise where.error(f'rule = "append" is for list fields, not {kind!r} ones')
    values = raw.get("values", [])
    if kind == "enum" and (not isinstance(values, list) or not values):
        raise where.error("an enum needs values = [...]")
    if kind != "enum" and values:
        raise where.error('values is only for type = "enum"')
    pattern = raw.get("pattern")
    compiled = None
    if pattern is not None:
        if kind not in ("string", "enum", "list") or not isinstance(pattern, str):
            raise where.error("pattern must be a regular expression, for a string field")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise where.error(
                f"pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    low, high = _number(raw.get("min"), where, "min"), _number(raw.get("max"), where, "max")
    if (low is not None or high is not None) and kind not in ("int", "decimal", "range"):
        raise where.error("min and max are for int, decimal and range fields")
    if low is not None and high is not None and low > high:
        raise where.error(f"min ({low:g}) is greater than max ({high:g})")
    max_length = raw.get("max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise where.error("max_length must be a positive integer")
    items = raw.get("items", "string")
    if items not in FIELD_TYPES - {"list", "enum", "range"}:
        raise where.error(f"items must be a scalar type, not {items!r}")
    sync = raw.get("sync", type_sync)
    if sync not in SYNC_CLASSES:
        raise where.error(f"sync must be one of {sorted(SYNC_CLASSES)}, not {sync!r}")
    if type_sync == BATCH and sync != BATCH:
        raise where.error(
            f'a field of a type of sync = "batch" is batch data too, not {sync!r}: '
            "its records are pulled in batches only"
        )
    priority = raw.get("priority", "normal")
    if priority not in PRIORITIES:
        raise where.error(f"priority must be one of {list(PRIORITIES)}, not {priority!r}")
    critical = raw.get("critical_values", [])
    if not isinstance(critical, list):
        raise where.error("critical_values must be a list")
    if critical and rule == "append":
        raise where.error('critical_values is not for rule = "append" (a log has no single value)')
    if critical and sync != "realtime":
        raise where.error('critical_values needs sync = "realtime"')
    read = raw.get("read")
    max_size, content_types = _file_limits(raw, kind, items, where)
    spec = FieldSpec(
        name=name,
        type=kind,
        rule=rule,
        roles=roles,
        required=bool(raw.get("required", False)),
        pattern=compiled,
        min=low,
        max=high,
        values=tuple(values),
        max_length=max_length,
        items=items,
        sync=sync,
        priority=priority,
        critical_values=tuple(critical),
        read=None if read is None else _roles(read, where, "read"),
        max_size=max_size,
        content_types=content_types,
    )
    for value in critical:
        try:
            spec.check(value)
        except InvalidValue as exc:
            raise where.error(f"critical_values: {exc}") from None
    return spec


def _file_limits(
    raw: Mapping[str, Any], kind: str, items: str, where: _Where
) -> tuple[int | None, tuple[str, ...]]:
    """A ``file`` field's (or list of files') ``max_size`` and
    ``content_types``: a positive integer, and media types each with a sniffer
    (:data:`fieldpush.sync.sniff.SNIFFERS`), so that no declared type goes
    unchecked. Refused on any other field."""
    max_size, content_types = raw.get("max_size"), raw.get("content_types")
    is_file = kind == "file" or (kind == "list" and items == "file")
    if not is_file:
        if max_size is not None or content_types is not None:
            raise where.error('max_size and content_types are for type = "file" (or its lists)')
        return None, ()
    if kind == "file" and (raw.get("pattern") is not None or raw.get("max_length") is not None):
        raise where.error('pattern and max_length are not for type = "file"')
    if max_size is not None and (
        isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
    ):
        raise where.error("max_size must be a positive integer (bytes)")
    if content_types is None:
        return max_size, ()
    if (
        not isinstance(content_types, list)
        or not content_types
        or not all(isinstance(t, str) for t in content_types)
    ):
        raise where.error('content_types must be a list of media types, such as ["image/jpeg"]')
    unknown = [t for t in content_types if t not in SNIFFERS]
    if unknown:
        raise where.error(
            f"content_types: no content sniffer for {unknown}, so their files could not be "
            f"checked; known types: {sorted(SNIFFERS)}"
        )
    if len(set(content_types)) != len(content_types):
        raise where.error("content_types lists a type twice")
    return max_size, tuple(content_types)


def _record_type(name: str, raw: Any, where: _Where) -> RecordType:
    if not isinstance(raw, dict):
        raise where.error("must be a table")
    unknown = raw.keys() - _TYPE_KEYS
    if unknown:
        raise where.error(f"unknown key(s) {sorted(unknown)}; known: {sorted(_TYPE_KEYS)}")
    sync = raw.get("sync", "delta")
    if sync not in SYNC_CLASSES:
        raise where.error(f"sync must be one of {sorted(SYNC_CLASSES)}, not {sync!r}")
    poll_s = _number(raw.get("poll_s"), where, "poll_s")
    if sync == "poll" and (poll_s is None or poll_s <= 0):
        raise where.error('sync = "poll" needs poll_s, the poll interval in seconds')
    if sync != "poll" and poll_s is not None:
        raise where.error('poll_s is only for sync = "poll"')
    batch_s = _number(raw.get("batch_s"), where, "batch_s")
    raw_fields = raw.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise where.error("needs [fields]")
    fields = {}
    for field_name, field_raw in raw_fields.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", field_name):
            raise where.error(f"field name {field_name!r}: use lower case letters, digits and _")
        fields[field_name] = _field(
            field_name, field_raw, sync, _Where(where.path, *where.parts, field_name)
        )
    scope = raw.get("scope")
    if not isinstance(scope, str) or scope not in fields or fields[scope].type != "string":
        raise where.error(f"scope must name one of its string fields, not {scope!r}")
    team = raw.get("team")
    if team is not None and (team not in fields or fields[team].type != "string"):
        raise where.error(f"team must name one of its string fields, not {team!r}")
    _check_batch(sync, fields, scope, team, batch_s, where)
    read = _scopes(raw.get("read", {}), where, "read")
    write = _scopes(raw.get("write", {}), where, "write")
    for role, scope_name in {**read, **write}.items():
        if scope_name == "team" and team is None:
            raise where.error(f'{role} has scope "team" but the type has no team field')
    for role in write:
        if role not in read:
            raise where.error(f"write.{role}: a role that writes must also read")
    rtype = RecordType(
        name=name,
        fields=fields,
        scope=scope,
        team=team,
        sync=sync,
        poll_s=poll_s,
        batch_s=batch_s,
        read=read,
        write=write,
        create=_roles(raw.get("create", []), where, "create"),
        delete=_roles(raw.get("delete", []), where, "delete"),
    )
    _check_grants(rtype, where)
    return rtype


def _check_batch(
    sync: str,
    fields: Mapping[str, FieldSpec],
    scope: str,
    team: str | None,
    batch_s: float | None,
    where: _Where,
) -> None:
    """A type with batch data needs ``batch_s`` (and only such a type has it);
    the scope and team fields of a core type decide who sees its records, so
    they are core data."""
    batch = [name for name, spec in fields.items() if spec.sync == BATCH]
    if batch and (batch_s is None or batch_s <= 0):
        raise where.error(
            'batch data (sync = "batch") needs batch_s, the batch interval in seconds'
        )
    if not batch and batch_s is not None:
        raise where.error('batch_s is only for a type with batch data (sync = "batch")')
    if sync != BATCH:
        for name in (scope, team):
            if name is not None and fields[name].sync == BATCH:
                raise _Where(where.path, *where.parts, name).error(
                    "the scope and team fields decide who sees a record: they cannot be batch data"
                )


def _check_grants(rtype: RecordType, where: _Where) -> None:
    """Refuse a grant no listed role can ever use (``<type>.create``,
    ``<type>.delete``, ``<type>.<field>``): the schema would say a role may do
    what every attempt of it is refused."""
    name = rtype.name

    def no_write(role: str) -> str:
        return f"{role} may not write {name} records (no write.{role})"

    for action in ("create", "delete"):
        at = _Where(where.path, *where.parts, action)
        for role in sorted(getattr(rtype, action)):
            if role not in rtype.write:
                raise at.error(
                    f"{no_write(role)}, so it could never {action} one: "
                    f"give it a write scope or remove it from {action}"
                )
    for spec in rtype.fields.values():
        for role in sorted(spec.roles - rtype.write.keys()):
            raise _Where(where.path, *where.parts, spec.name).error(
                f"roles: {no_write(role)}, so it could never edit this locked field "
                "(roles narrow who of the writers may edit it): "
                "give it a write scope or remove it from roles"
            )
    at = _Where(where.path, *where.parts, "create")
    for role in sorted(rtype.create - {"service"}):  # the CRM may edit locked fields
        scope = rtype.write[role]
        needed = [n for n, spec in rtype.fields.items() if spec.required]
        if scope == "own":
            needed.append(rtype.scope)  # set to the creator
        if scope != "all" and rtype.team is not None:
            needed.append(rtype.team)  # one of the creator's teams
        for field_name in needed:
            spec = rtype.fields[field_name]
            if spec.rule == "locked" and role not in spec.roles:
                raise at.error(
                    f"{role} could never create one: it may not set {field_name}, "
                    f"locked to {sorted(spec.roles)}, and a record it creates needs it"
                )


def parse_schema(raw: Mapping[str, Any], path: str = "<schema>") -> Schema:
    """Check a decoded schema document; SchemaError on the first problem."""
    unknown = raw.keys() - {"types"}
    if unknown:
        raise _Where(path).error(f"unknown top-level key(s) {sorted(unknown)}; use [types.<name>]")
    types_raw = raw.get("types")
    if not isinstance(types_raw, dict) or not types_raw:
        raise _Where(path).error("no record types: add [types.<name>] tables")
    types = {}
    for name, type_raw in types_raw.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _Where(path).error(f"record type {name!r}: use lower case letters, digits and _")
        types[name] = _record_type(name, type_raw, _Where(path, name))
    return Schema(types=types, path=path)


def load_schema(path: str | Path) -> Schema:
    """Read and check the schema file; SchemaError if it is missing or broken."""
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise SchemaError(
            f"{path}: schema file not found; set schema_path to your data dictionary "
            "(config/schema.toml in the repository is the default)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML: {exc}") from None
    return parse_schema(raw, str(path))
