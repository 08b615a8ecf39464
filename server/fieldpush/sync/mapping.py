"""Field mapping between each side's names and the schema's: ``config/mappings.toml``.

Two sides: ``phone`` (every token but ``service``) and ``crm`` (``service``
tokens). Per side and record type, a side field may be renamed to a schema
field (``field``), have its values translated (``values``: pairs
``[side value, schema value]``; ``default_out`` for schema values without a
pair) and be carried in another type (``convert``: the side's type,
``string``, ``int``, ``number`` or ``bool``).

Inbound data is mapped, then validated by the schema; outbound data is mapped
back. A ``convert`` also takes a value already of the schema's type (an int
for a CRM ``string`` budget). A value that cannot be mapped is refused with
:class:`~fieldpush.sync.schema.InvalidValue`, in plain English: the side's
field name, what it must be, and the value (cut, controls escaped).

Names without a mapping pass through unchanged, so the schema's own names are
always understood inbound. :func:`load_mappings` refuses, at start, a mapping
that names an unknown side, record type or field, translates to a value the
field does not allow, or maps two side fields onto one schema field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from fieldpush.logs import shown
from fieldpush.sync.schema import FieldSpec, InvalidValue, Schema, SchemaError

__all__ = [
    "SIDES",
    "FieldMap",
    "Mappings",
    "Side",
    "TypeMapping",
    "load_mappings",
    "parse_mappings",
]


class Side(StrEnum):
    """Who a name or value belongs to: ``phone`` (every token but ``service``) or ``crm``."""

    PHONE = "phone"
    CRM = "crm"


SIDES: Final = tuple(side.value for side in Side)
_KEYS: Final = frozenset({"field", "values", "default_out", "convert"})
_NO_DEFAULT: Final = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # already the schema's type
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError


def _decimal_text(text: str) -> str:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError from None
    if not number.is_finite():
        raise ValueError
    return str(number)


def _to_decimal(value: Any) -> Any:
    if _is_number(value):
        return value  # the schema's decimal takes numbers
    if not isinstance(value, str):
        raise ValueError
    return _decimal_text(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value  # already the schema's type
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


def _number(value: Any) -> int | float:
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def _int_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # already the schema's type
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError
    return str(value)


def _number_decimal(value: Any) -> str:
    if not (_is_number(value) or isinstance(value, str)):
        raise ValueError
    return _decimal_text(str(value))


def _strict_bool_text(value: Any) -> str:
    if isinstance(value, str):
        return value  # already the schema's type
    if not isinstance(value, bool):
        raise ValueError
    return _bool_text(value)


@dataclass(frozen=True, slots=True)
class _Conversion:
    """One ``convert``: side value -> schema value, back, and what a side value
    must be (for the refusal message)."""

    inbound: Callable[[Any], Any]
    outbound: Callable[[Any], Any]
    expected: str


#: (side type, schema type) -> the conversion. Each inbound conversion also
#: takes a value already of the schema's type, as the schema would.
_CONVERSIONS: Final[dict[tuple[str, str], _Conversion]] = {
    ("string", "int"): _Conversion(
        _to_int, str, 'a whole number, as a number or as text such as "12000"'
    ),
    ("string", "decimal"): _Conversion(
        _to_decimal, str, 'a decimal number, as a number or as text such as "1200.50"'
    ),
    ("string", "bool"): _Conversion(
        _to_bool, _bool_text, 'true or false, or the text "true" or "false"'
    ),
    ("int", "string"): _Conversion(_int_text, _to_int, "a whole number or text"),
    ("number", "decimal"): _Conversion(
        _number_decimal, _number, 'a number, or a decimal number as text such as "1200.50"'
    ),
    ("bool", "string"): _Conversion(_strict_bool_text, _to_bool, "true or false, or text"),
}


@dataclass(frozen=True, slots=True)
class FieldMap:
    """How one side field maps onto one schema field."""

    side_name: str
    spec: FieldSpec
    values: tuple[tuple[Any, Any], ...] = ()
    default_out: Any = _NO_DEFAULT
    convert: str | None = None

    def inbound(self, value: Any) -> Any:
        if value is None:
            return None
        if self.values:
            for side, schema in self.values:
                if type(side) is type(value) and side == value:
                    return schema
            allowed = ", ".join(shown(side) for side, _ in self.values)
            raise InvalidValue(f"{self.side_name} must be one of {allowed}, not {shown(value)}")
        if self.convert is not None:
            conversion = _CONVERSIONS[(self.convert, self.spec.type)]
            try:
                return conversion.inbound(value)
            except (ValueError, TypeError):
                raise InvalidValue(
                    f"{self.side_name} must be {conversion.expected}, not {shown(value)}"
                ) from None
        return value

    def outbound(self, value: Any) -> Any:
        if value is None:
            return None
        if self.values:
            for side, schema in self.values:
                if schema == value:
                    return side
            return value if self.default_out is _NO_DEFAULT else self.default_out
        if self.convert is not None:
            return _CONVERSIONS[(self.convert, self.spec.type)].outbound(value)
        return value


@dataclass(frozen=True, slots=True)
class TypeMapping:
    """The mapping of one record type on one side (empty: names pass through)."""

    by_side_name: Mapping[str, FieldMap] = field(default_factory=dict)
    by_schema_name: Mapping[str, FieldMap] = field(default_factory=dict)

    def inbound(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Side names and values -> schema names and values (InvalidValue if a
        value cannot be mapped). A schema name is accepted as is, unless a
        mapped side field of the same mutation also targets it."""
        mapped: dict[str, Any] = {}
        for name, value in fields.items():
            rule = self.by_side_name.get(name)
            if rule is None:
                mapped.setdefault(name, value)
            else:
                mapped[rule.spec.name] = rule.inbound(value)
        return mapped

    def side_name(self, name: str) -> str:
        """The side's name of schema field ``name``."""
        rule = self.by_schema_name.get(name)
        return name if rule is None else rule.side_name

    def outbound(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Schema names and values -> the side's."""
        if not self.by_schema_name:
            return dict(fields)
        out = {}
        for name, value in fields.items():
            rule = self.by_schema_name.get(name)
            if rule is None:
                out[name] = value
            else:
                out[rule.side_name] = rule.outbound(value)
        return out


_IDENTITY: Final = TypeMapping()


@dataclass(frozen=True, slots=True)
class Mappings:
    #: side -> record type -> mapping.
    sides: Mapping[str, Mapping[str, TypeMapping]] = field(default_factory=dict)

    def of(self, side: str, record_type: str) -> TypeMapping:
        return self.sides.get(side, {}).get(record_type, _IDENTITY)


def _field_map(schema: Schema, where: str, side_name: str, raw: Any, record_type: str) -> FieldMap:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be a table with field / values / convert")
    unknown = raw.keys() - _KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    target = raw.get("field", side_name)
    spec = schema.types[record_type].fields.get(target)
    if spec is None:
        raise SchemaError(
            f"{where}: maps to {target!r}, which is not a field of {record_type} in {schema.path}"
        )
    values = raw.get("values", [])
    if not isinstance(values, list) or not all(
        isinstance(pair, list) and len(pair) == 2 for pair in values
    ):
        raise SchemaError(f"{where}: values must be a list of [side value, schema value] pairs")
    for _, schema_value in values:
        try:
            spec.check(schema_value)
        except InvalidValue as exc:
            raise SchemaError(f"{where}: values: {exc}") from None
    convert = raw.get("convert")
    if convert is not None and (convert, spec.type) not in _CONVERSIONS:
        supported = sorted(f"{a} <-> {b}" for a, b in _CONVERSIONS)
        raise SchemaError(
            f"{where}: cannot convert {convert!r} to the {spec.type} field {target!r}; "
            f"supported (side <-> schema): {', '.join(supported)}"
        )
    if convert is not None and values:
        raise SchemaError(f"{where}: use values or convert, not both")
    if "default_out" in raw and not values:
        raise SchemaError(f"{where}: default_out needs values")
    return FieldMap(
        side_name=side_name,
        spec=spec,
        values=tuple((side, schema_value) for side, schema_value in values),
        default_out=raw.get("default_out", _NO_DEFAULT),
        convert=convert,
    )


def parse_mappings(raw: Mapping[str, Any], schema: Schema, path: str = "<mappings>") -> Mappings:
    """Check a decoded mappings document against ``schema``."""
    sides: dict[str, dict[str, TypeMapping]] = {}
    for side, types in raw.items():
        if side not in SIDES:
            raise SchemaError(f"{path}: unknown side {side!r}; sides are {list(SIDES)}")
        if not isinstance(types, dict):
            raise SchemaError(f"{path}: {side}: must be a table of record types")
        for record_type, fields in types.items():
            if record_type not in schema.types:
                raise SchemaError(
                    f"{path}: {side}.{record_type}: no record type {record_type!r} in {schema.path}"
                )
            if not isinstance(fields, dict):
                raise SchemaError(f"{path}: {side}.{record_type}: must be a table of fields")
            by_side: dict[str, FieldMap] = {}
            by_schema: dict[str, FieldMap] = {}
            for side_name, field_raw in fields.items():
                where = f"{path}: {side}.{record_type}.{side_name}"
                rule = _field_map(schema, where, side_name, field_raw, record_type)
                if rule.spec.name in by_schema:
                    raise SchemaError(
                        f"{where}: {rule.spec.name!r} is already mapped from "
                        f"{by_schema[rule.spec.name].side_name!r}"
                    )
                by_side[side_name] = by_schema[rule.spec.name] = rule
            sides.setdefault(side, {})[record_type] = TypeMapping(by_side, by_schema)
    return Mappings(sides)


def load_mappings(path: str | Path | None, schema: Schema) -> Mappings:
    """Read and check the mappings file; no file (None): names pass through."""
    if path is None:
        return Mappings()
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise SchemaError(f"{path}: mappings file not found; set mappings_path") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML: {exc}") from None
    return parse_mappings(raw, schema, str(path))
