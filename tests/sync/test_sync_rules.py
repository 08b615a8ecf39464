"""The pure parts of delta sync: HLC stamps, the data dictionary, field mapping
and the per-field conflict rules, including convergence under any order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldpush.sync.hlc import HybridClock, Stamp, clamp
from fieldpush.sync.mapping import load_mappings, parse_mappings
from fieldpush.sync.rules import Actor, Edit, RecordState, merge
from fieldpush.sync.schema import InvalidValue, Schema, SchemaError, load_schema, parse_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(ROOT / "config" / "schema.toml")
CUSTOMER = SCHEMA.types["customer"]

ALICE = Actor("alice", "sales", "alice-phone", frozenset({"north"}))
BOB = Actor("bob", "sales", "bob-phone", frozenset({"north"}))
CRM = Actor("crm", "service", "crm")
BOSS = Actor("boss", "supervisor", "boss-phone", frozenset({"north"}))


def stamp(wall: int, counter: int = 0, device: str = "alice-phone") -> Stamp:
    return Stamp(wall, counter, device)


def customer(**values: Any) -> RecordState:
    base = {"name": "ACME", "owner": "alice", "team": "north"}
    base.update(values)
    return RecordState({name: (value, stamp(1)) for name, value in base.items()}, version=1)


# ------------------------------------------------------------------ HLC


def test_stamps_order_by_wall_then_counter_then_device() -> None:
    assert stamp(2, 0) > stamp(1, 99)
    assert stamp(1, 2) > stamp(1, 1)
    assert stamp(1, 1, "b") > stamp(1, 1, "a")


def test_a_stamp_ahead_of_its_receipt_is_clamped_to_it() -> None:
    assert clamp(stamp(900, 5), received_ms=900) == stamp(900, 5)
    assert clamp(stamp(10, 5), received_ms=900) == stamp(10, 5)  # behind: kept
    assert clamp(stamp(901), received_ms=900) == stamp(900)
    assert clamp(stamp(10_000, 3), received_ms=900) == stamp(900, 3)  # counter kept


def test_the_server_clock_moves_past_every_stamp_it_saw() -> None:
    wall = [100]
    clock = HybridClock("server", lambda: wall[0])
    first = clock.now()
    assert clock.now() > first
    clock.observe(stamp(500, 7))
    after = clock.now()
    assert (after.wall_ms, after.counter) > (500, 7)
    wall[0] = 1_000
    assert clock.now() == Stamp(1_000, 0, "server")


# ------------------------------------------------------------------ schema


def test_the_default_schema_has_the_names_outside_tools_rely_on() -> None:
    fields = {name: set(t.fields) for name, t in SCHEMA.types.items()}
    assert {
        "name",
        "level",
        "owner",
        "team",
        "stage",
        "budget",
        "intended_model",
        "contract_no",
    } <= fields["customer"]
    assert {"serial", "model", "customer", "last_service", "service_log"} <= fields["device"]
    assert {"customer", "owner", "note", "next_visit"} <= fields["follow_up"]
    assert {"device", "fault", "urgency", "assignee", "status"} <= fields["work_order"]
    assert CUSTOMER.scope == "owner" and SCHEMA.types["work_order"].scope == "assignee"
    assert CUSTOMER.fields["name"].rule == "mdm" and CUSTOMER.fields["stage"].rule == "lww"
    assert CUSTOMER.fields["contract_no"].roles == {"admin", "service"}
    assert CUSTOMER.fields["stage"].sync == "realtime"
    assert CUSTOMER.fields["stage"].priority == "high"
    assert SCHEMA.types["work_order"].fields["urgency"].priority_of("urgent") == "critical"
    assert SCHEMA.poll_intervals() == {"visit_plan": 900.0}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("12345678", None),
        ("1234567", "must match"),
        ("123456789", "must match"),
        ("1234567a", "must match"),
        (12345678, "must be a string"),
        (None, "is required"),
    ],
)
def test_a_device_serial_is_exactly_eight_digits(value: object, problem: str | None) -> None:
    spec = SCHEMA.types["device"].fields["serial"]
    if problem is None:
        assert spec.check(value) == value
    else:
        with pytest.raises(ValueError, match=problem):
            spec.check(value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("budget", 0, 0),
        ("budget", -1, ValueError),
        ("budget", 1.5, ValueError),
        ("budget", True, ValueError),
        ("stage", "signed", "signed"),
        ("stage", "won", ValueError),
        ("level", "A", "A"),
        ("name", "x" * 201, ValueError),
        ("phone", "+49 89 1234", "+49 89 1234"),
        ("phone", "call me", ValueError),
    ],
)
def test_customer_field_validation(field: str, value: object, expected: object) -> None:
    spec = CUSTOMER.fields[field]
    if expected is ValueError:
        with pytest.raises(ValueError):
            spec.check(value)
    else:
        assert spec.check(value) == expected


def test_dates_decimals_and_lists_are_checked_and_normalised() -> None:
    device = SCHEMA.types["device"].fields
    assert device["last_service"].check("2026-05-01") == "2026-05-01"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        device["last_service"].check("01.05.2026")
    assert device["customer"].check("c-1") == "c-1"
    amount = SCHEMA.types["contract"].fields["amount"]
    assert amount.check(1200.5) == "1200.5"
    assert amount.check("99.90") == "99.90"
    with pytest.raises(ValueError):
        amount.check("NaN")
    with pytest.raises(ValueError, match="at least"):
        amount.check("-1")


def schema_with(field: dict[str, Any], **type_keys: Any) -> dict[str, Any]:
    record = {"scope": "owner", "fields": {"owner": {"type": "string"}, "x": field}}
    record.update(type_keys)
    return {"types": {"thing": record}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (schema_with({"type": "text"}), "thing.x: type must be one of"),
        (schema_with({"type": "enum"}), "thing.x: an enum needs values"),
        (schema_with({"type": "string", "rule": "locked"}), "thing.x: a locked field needs roles"),
        (schema_with({"type": "string", "rule": "newest"}), "thing.x: rule must be one of"),
        (
            schema_with({"type": "string", "pattern": "(["}),
            "thing.x: pattern '([' is not a valid regular expression",
        ),
        (schema_with({"type": "int", "min": 5, "max": 1}), "thing.x: min (5) is greater than max"),
        (schema_with({"type": "string", "colour": "red"}), "thing.x: unknown key(s) ['colour']"),
        (
            schema_with({"type": "string", "rule": "locked", "roles": ["boss"]}),
            "unknown role(s) ['boss']",
        ),
        (schema_with({"type": "string"}, sync="poll"), 'thing: sync = "poll" needs poll_s'),
        (schema_with({"type": "string"}, scope="nobody"), "thing: scope must name one of its"),
        (
            schema_with({"type": "string"}, sync="batch"),
            'thing: batch data (sync = "batch") needs batch_s',
        ),
        (
            schema_with({"type": "string", "sync": "batch"}),
            'thing: batch data (sync = "batch") needs batch_s',
        ),
        (
            schema_with({"type": "string", "sync": "batch"}, batch_s=0),
            'thing: batch data (sync = "batch") needs batch_s',
        ),
        (
            schema_with({"type": "string"}, batch_s=60),
            "thing: batch_s is only for a type with batch data",
        ),
        (
            schema_with({"type": "string", "sync": "realtime"}, sync="batch", batch_s=60),
            """thing.x: a field of a type of sync = "batch" is batch data too, not 'realtime'""",
        ),
        (
            {
                "types": {
                    "thing": {
                        "scope": "owner",
                        "batch_s": 60,
                        "fields": {"owner": {"type": "string", "sync": "batch"}},
                    }
                }
            },
            "thing.owner: the scope and team fields decide who sees a record: they cannot be",
        ),
        (
            schema_with({"type": "string"}, read={"sales": "team"}),
            'has scope "team" but the type has no team',
        ),
        (
            schema_with({"type": "string"}, write={"sales": "own"}),
            "write.sales: a role that writes must also read",
        ),
        ({"types": {}}, "no record types"),
        (
            schema_with({"type": "string", "rule": "append"}),
            """thing.x: rule = "append" is for list fields, not 'string' ones""",
        ),
        (
            schema_with(
                {"type": "list", "rule": "append", "sync": "realtime", "critical_values": [["a"]]}
            ),
            'thing.x: critical_values is not for rule = "append"',
        ),
    ],
)
def test_a_broken_schema_is_refused_with_where_and_what(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(raw, "schema.toml")
    assert str(caught.value).startswith("schema.toml: ")
    assert message in str(caught.value)


def test_a_missing_or_unparsable_schema_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="schema file not found"):
        load_schema(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[types.customer\n")
    with pytest.raises(SchemaError, match=r"broken\.toml: not valid TOML"):
        load_schema(broken)


# ------------------------------------------------------------------ mapping


def test_the_default_mappings_rename_translate_and_convert() -> None:
    mappings = load_mappings(ROOT / "config" / "mappings.toml", SCHEMA)
    phone = mappings.of("phone", "customer")
    assert phone.inbound({"vehicle_preference": "X9", "vip": True}) == {
        "intended_model": "X9",
        "level": "A",
    }
    assert phone.inbound({"intended_model": "X9"}) == {"intended_model": "X9"}
    assert phone.outbound({"intended_model": "X9", "level": "C"}) == {
        "vehicle_preference": "X9",
        "vip": False,
    }
    assert phone.outbound({"level": "A"}) == {"vip": True}
    with pytest.raises(ValueError, match=r'^vip must be one of true, false, not "yes"$'):
        phone.inbound({"vip": "yes"})
    crm = mappings.of("crm", "customer")
    assert crm.inbound({"budget": "12000"}) == {"budget": 12000}
    assert crm.outbound({"budget": 5}) == {"budget": "5"}
    with pytest.raises(
        ValueError,
        match=r'^budget must be a whole number, as a number or as text such as "12000", '
        r'not "a lot"$',
    ):
        crm.inbound({"budget": "a lot"})
    assert mappings.of("phone", "device").inbound({"serial": "1"}) == {"serial": "1"}


def test_the_seeds_mappings_are_shipped() -> None:
    """The seeds' examples: vehicle preference -> intended model, budget range ->
    purchase budget, device model <-> Model_No."""
    mappings = load_mappings(ROOT / "config" / "mappings.toml", SCHEMA)
    phone = mappings.of("phone", "customer")
    sent = {"vehicle_preference": "T4", "budget_range": {"min": 20000, "max": 35000}}
    assert phone.inbound(sent) == {
        "intended_model": "T4",
        "purchase_budget": {"min": 20000, "max": 35000},
    }
    assert phone.outbound(phone.inbound(sent)) == sent
    device_phone, device_crm = mappings.of("phone", "device"), mappings.of("crm", "device")
    assert device_phone.inbound({"device_model": "X9-200"}) == {"model": "X9-200"}
    assert device_crm.inbound({"Model_No": "X9-200"}) == {"model": "X9-200"}
    assert device_crm.outbound({"model": "X9-200"}) == {"Model_No": "X9-200"}
    assert device_phone.outbound({"model": "X9-200"}) == {"device_model": "X9-200"}


@pytest.mark.parametrize(
    ("convert", "schema_type", "value", "expected"),
    [
        ("string", "int", 12000, 12000),
        ("string", "int", "12000", 12000),
        ("string", "decimal", 1200.5, 1200.5),
        ("string", "decimal", "1200.50", "1200.50"),
        ("string", "bool", True, True),
        ("string", "bool", "false", False),
        ("int", "string", "K-17", "K-17"),
        ("int", "string", 17, "17"),
        ("number", "decimal", "1200.50", "1200.50"),
        ("number", "decimal", 3, "3"),
        ("bool", "string", "yes", "yes"),
        ("bool", "string", True, "true"),
    ],
)
def test_a_conversion_takes_a_value_already_of_the_schema_type(
    convert: str, schema_type: str, value: object, expected: object
) -> None:
    schema = parse_schema(schema_with({"type": schema_type}))
    mapping = parse_mappings({"crm": {"thing": {"y": {"field": "x", "convert": convert}}}}, schema)
    assert mapping.of("crm", "thing").inbound({"y": value}) == {"x": expected}


@pytest.mark.parametrize(
    ("convert", "schema_type", "value"),
    [
        ("string", "int", True),
        ("string", "int", 1.5),
        ("string", "int", [1]),
        ("string", "decimal", {"a": 1}),
        ("string", "decimal", False),
        ("string", "bool", 1),
        ("int", "string", 1.5),
        ("number", "decimal", [1]),
        ("bool", "string", 0),
    ],
)
def test_a_conversion_refuses_other_types_in_plain_english(
    convert: str, schema_type: str, value: object
) -> None:
    schema = parse_schema(schema_with({"type": schema_type}))
    mapping = parse_mappings({"crm": {"thing": {"y": {"field": "x", "convert": convert}}}}, schema)
    with pytest.raises(InvalidValue, match=r"^y must be .*, not ") as caught:
        mapping.of("crm", "thing").inbound({"y": value})
    assert " of a " not in str(caught.value)


PURCHASE_BUDGET = CUSTOMER.fields["purchase_budget"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"min": -1, "max": 5}, "purchase_budget.min must be at least 0, not -1"),
        ({"min": 9, "max": 5}, "purchase_budget: min (9) must not be greater than max (5)"),
        ({"min": 0, "max": 10**30}, "purchase_budget.max must be an integer between"),
        ({"min": 0, "max": 2 * 10**9}, "purchase_budget.max must be at most 1e+09, not 2000000000"),
        (
            {"min": 1.5, "max": 5},
            "purchase_budget.min must be an integer (a whole number), not 1.5",
        ),
        (
            {"min": "1", "max": 5},
            'purchase_budget.min must be an integer (a whole number), not "1"',
        ),
        (
            {"min": True, "max": 5},
            "purchase_budget.min must be an integer (a whole number), not true",
        ),
        ({"min": {"a": [1]}, "max": 5}, "not an object with 1 key"),
        ({"min": 1}, 'must be a range {"min": low, "max": high} of whole numbers, not an object'),
        ({"min": 1, "max": 2, "extra": 3}, "not an object with 3 key(s)"),
        ([1, 2], "not a list of 2 item(s)"),
        (25000, "not 25000"),
        ("20000-35000", 'not "20000-35000"'),
        ("\x1b[2J" + "9" * 100, 'not "\\u001b[2J9999'),
    ],
)
def test_a_budget_range_refuses_hostile_values(value: object, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        PURCHASE_BUDGET.check(value)
    text = str(caught.value)
    assert message in text
    assert len(text) < 200 and "\x1b" not in text


def test_a_budget_range_is_stored_as_min_and_max() -> None:
    assert PURCHASE_BUDGET.check({"max": 35000, "min": 20000}) == {"min": 20000, "max": 35000}
    assert PURCHASE_BUDGET.check({"min": 5, "max": 5}) == {"min": 5, "max": 5}
    assert PURCHASE_BUDGET.check(None) is None


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ({"type": "string", "max_length": 3}, "abcd", "x may be at most 3 characters long, not 4"),
        ({"type": "string"}, 5, "x must be a string, not 5"),
        ({"type": "int"}, "5", 'x must be an integer (a whole number), not "5"'),
        ({"type": "bool"}, "yes", 'x must be true or false, not "yes"'),
        ({"type": "date"}, "1.5.26\n", 'x must be a date YYYY-MM-DD, not "1.5.26\\n"'),
        ({"type": "enum", "values": ["a", "b"]}, "c", 'x must be one of "a", "b", not "c"'),
        ({"type": "list", "max_length": 1}, ["a", "b"], "x may have at most 1 items, not 2"),
        (
            {"type": "decimal"},
            "ten",
            'x must be a decimal number or its text (such as "1200.50"), not "ten"',
        ),
        ({"type": "int", "min": 1}, 0, "x must be at least 1, not 0"),
    ],
)
def test_schema_messages_name_field_expectation_and_value(
    spec: dict[str, Any], value: object, message: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_schema(schema_with(spec)).types["thing"].fields["x"].check(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tablet": {}}, "unknown side 'tablet'"),
        ({"phone": {"lorry": {}}}, "phone.lorry: no record type 'lorry'"),
        (
            {"phone": {"customer": {"pref": {"field": "colour"}}}},
            "phone.customer.pref: maps to 'colour'",
        ),
        (
            {"phone": {"customer": {"vip": {"field": "level", "values": [[True, "Z"]]}}}},
            "values: level must be one of",
        ),
        (
            {"phone": {"customer": {"b": {"field": "budget", "convert": "bool"}}}},
            "cannot convert 'bool'",
        ),
        (
            {"phone": {"customer": {"a": {"field": "name"}, "b": {"field": "name"}}}},
            "'name' is already mapped from 'a'",
        ),
    ],
)
def test_a_broken_mapping_is_refused_at_start(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(
        SchemaError, match="mappings.toml: .*" + message.replace("(", r"\(").replace("[", r"\[")
    ):
        parse_mappings(raw, SCHEMA, "mappings.toml")


# ------------------------------------------------------------------ rules


def test_mdm_fields_are_the_crms_and_a_phone_edit_becomes_a_proposal() -> None:
    outcome = merge(CUSTOMER, customer(), Edit({"name": "Acme Ltd"}, stamp(9)), ALICE)
    assert (outcome.status, outcome.reason) == ("rejected", "mdm_owned")
    assert outcome.state is None and not outcome.changed
    assert outcome.proposed == {"name": ("ACME", "Acme Ltd")}
    crm = merge(CUSTOMER, customer(), Edit({"name": "Acme Ltd"}, stamp(0, 0, "crm")), CRM)
    assert crm.status == "applied" and crm.state is not None
    assert crm.state.value("name") == "Acme Ltd"  # master: even with an older stamp


def test_lww_newest_stamp_wins_and_the_loser_gets_a_conflict() -> None:
    state = customer(stage="lead")
    state.fields["stage"] = ("lead", stamp(100))
    newer = merge(CUSTOMER, state, Edit({"stage": "signed"}, stamp(200)), ALICE)
    assert newer.status == "applied" and newer.changed == {"stage": ("lead", "signed")}
    older = merge(CUSTOMER, state, Edit({"stage": "lost"}, stamp(50)), ALICE)
    assert older.status == "conflict" and older.state is None
    same = merge(CUSTOMER, state, Edit({"stage": "lead"}, stamp(100)), ALICE)
    assert same.status == "applied" and same.state is None  # the same edit again


def test_equal_wall_and_counter_are_ordered_by_device() -> None:
    state = customer()
    state.fields["budget"] = (1, stamp(100, 0, "a-phone"))
    wins = merge(CUSTOMER, state, Edit({"budget": 2}, stamp(100, 0, "b-phone")), ALICE)
    loses = merge(CUSTOMER, state, Edit({"budget": 2}, stamp(100, 0, "0-phone")), ALICE)
    assert wins.status == "applied" and loses.status == "conflict"


def test_locked_fields_only_for_the_listed_roles() -> None:
    refused = merge(CUSTOMER, customer(), Edit({"contract_no": "K-1"}, stamp(5)), ALICE)
    assert (refused.status, refused.reason) == ("rejected", "field_locked")
    admin = Actor("root", "admin", "root-phone")
    allowed = merge(CUSTOMER, customer(), Edit({"contract_no": "K-1"}, stamp(5)), admin)
    assert allowed.status == "applied"


READ_ONLY_LOCKED = {
    "types": {
        "thing": {
            "scope": "owner",
            "team": "team",
            "read": {"supervisor": "team", "admin": "all"},
            "write": {"admin": "all"},
            "fields": {
                "owner": {"type": "string"},
                "team": {"type": "string"},
                "no": {"type": "string", "rule": "locked", "roles": ["admin"]},
            },
        }
    }
}


@pytest.mark.parametrize(
    "fields",
    [{"contract_no": "K-1"}, {"stage": "lost"}, {"name": "X"}, {"contract_no": "K", "stage": "x"}],
)
def test_a_supervisor_changes_nothing_it_reads(fields: dict[str, Any]) -> None:
    """Issue 12, item 7: a role without write access edits nothing, locked
    fields included, and is told ``forbidden`` (it reads the record)."""
    for rtype, state in (
        (CUSTOMER, customer()),
        (
            SCHEMA.types["work_order"],
            RecordState({"assignee": ("eve", stamp(1)), "team": ("north", stamp(1))}, version=1),
        ),
    ):
        edit = Edit(fields if rtype is CUSTOMER else {"assignee": "zed"}, stamp(5))
        outcome = merge(rtype, state, edit, BOSS)
        assert (outcome.status, outcome.reason, outcome.state) == ("rejected", "forbidden", None)
        assert not outcome.changed and not outcome.proposed
    for name, rtype in SCHEMA.types.items():
        assert "supervisor" not in rtype.write and "supervisor" not in rtype.create, name
        assert "supervisor" not in rtype.delete, name
        assert not any("supervisor" in spec.roles for spec in rtype.fields.values()), name
        created = merge(rtype, None, Edit({"owner": "boss", "team": "north"}, stamp(1)), BOSS)
        assert (created.status, created.reason) == ("rejected", "not_found"), name


def test_a_writer_without_all_access_keeps_the_team_among_its_own() -> None:
    """A schema where a sales user may edit the team and owner fields: moving a
    record out of its teams, or giving it away, is ``forbidden`` for that field."""
    raw = {
        "types": {
            "note": {
                "scope": "owner",
                "team": "team",
                "create": ["sales", "admin"],
                "read": {"sales": "own", "admin": "all"},
                "write": {"sales": "own", "admin": "all"},
                "fields": {
                    "owner": {"type": "string"},
                    "team": {"type": "string"},
                    "text": {"type": "string"},
                },
            }
        }
    }
    note = parse_schema(raw).types["note"]
    state = RecordState(
        {n: (v, stamp(1)) for n, v in {"owner": "alice", "team": "north"}.items()}, version=1
    )
    moved = merge(note, state, Edit({"team": "south", "text": "hi"}, stamp(5)), ALICE)
    assert (moved.status, moved.reason) == ("rejected", "forbidden")
    assert moved.fields == {"team": "forbidden", "text": "applied"}
    assert moved.state is not None and moved.state.value("team") == "north"
    cleared = merge(note, state, Edit({"team": None}, stamp(5)), ALICE)
    assert cleared.reason == "forbidden"
    given = merge(note, state, Edit({"owner": "bob"}, stamp(5)), ALICE)
    assert given.reason == "forbidden"
    same = merge(note, state, Edit({"team": "north"}, stamp(5)), ALICE)
    assert same.status == "applied"
    two = Actor("alice", "sales", "p", frozenset({"north", "west"}))
    assert merge(note, state, Edit({"team": "west"}, stamp(5)), two).status == "applied"
    admin = Actor("root", "admin", "r")
    assert merge(note, state, Edit({"team": "south"}, stamp(5)), admin).status == "applied"
    for team in ("south", "", "north\x00"):
        created = merge(note, None, Edit({"team": team}, stamp(1)), ALICE)
        assert (created.status, created.reason) == ("rejected", "not_found"), team
    nomad = Actor("nomad", "sales", "p")
    assert merge(note, None, Edit({"text": "x"}, stamp(1)), nomad).reason == "not_found"
    assert merge(note, None, Edit({"text": "x"}, stamp(1)), two).reason == "not_found"
    assert merge(note, None, Edit({"text": "x"}, stamp(1)), ALICE).status == "applied"


def grants(**type_keys: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "scope": "owner",
        "team": "team",
        "read": {"sales": "own", "supervisor": "team", "dispatcher": "all", "admin": "all"},
        "write": {"sales": "own", "dispatcher": "all", "admin": "all"},
        "fields": {
            "owner": {"type": "string"},
            "team": {"type": "string"},
            "x": {"type": "string"},
        },
    }
    fields = type_keys.pop("fields", {})
    record.update(type_keys)
    record["fields"] = {**record["fields"], **fields}
    return {"types": {"thing": record}}


LOCKED_TEAM = {"team": {"type": "string", "rule": "locked", "roles": ["dispatcher", "admin"]}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (grants(create=["supervisor", "admin"]), "thing.create: supervisor may not write thing"),
        (grants(delete=["admin", "supervisor"]), "thing.delete: supervisor may not write thing"),
        (
            grants(fields={"x": {"type": "string", "rule": "locked", "roles": ["supervisor"]}}),
            "thing.x: roles: supervisor may not write thing records (no write.supervisor)",
        ),
        (
            grants(create=["sales"], fields=LOCKED_TEAM),
            "thing.create: sales could never create one: it may not set team, locked to",
        ),
        (
            grants(
                create=["sales"],
                fields={"owner": {"type": "string", "rule": "locked", "roles": ["admin"]}},
            ),
            "thing.create: sales could never create one: it may not set owner",
        ),
        (
            grants(
                create=["dispatcher"],
                fields={
                    "x": {"type": "string", "rule": "locked", "roles": ["admin"], "required": True}
                },
            ),
            "thing.create: dispatcher could never create one: it may not set x",
        ),
    ],
)
def test_a_grant_that_can_never_be_used_is_refused_with_the_place(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(raw, "schema.toml")
    assert str(caught.value).startswith("schema.toml: " + message.split(":", maxsplit=1)[0] + ": ")
    assert message in str(caught.value)


def test_grants_that_can_be_used_are_accepted() -> None:
    parse_schema(grants(create=["dispatcher", "sales"], delete=["sales"]))
    parse_schema(grants(create=["dispatcher", "admin"], fields=LOCKED_TEAM))
    parse_schema(READ_ONLY_LOCKED)


def test_fields_are_independent_two_people_editing_different_fields_both_win() -> None:
    base = customer()
    first = merge(CUSTOMER, base, Edit({"stage": "signed"}, stamp(10, 0, "a")), ALICE)
    assert first.state is not None
    second = merge(CUSTOMER, first.state, Edit({"budget": 5000}, stamp(5, 0, "b")), CRM)
    assert second.state is not None
    assert second.state.value("stage") == "signed" and second.state.value("budget") == 5000


def test_a_mixed_edit_applies_what_it_may_and_reports_each_field() -> None:
    outcome = merge(CUSTOMER, customer(), Edit({"stage": "signed", "name": "X"}, stamp(9)), ALICE)
    assert (outcome.status, outcome.reason) == ("rejected", "mdm_owned")
    assert outcome.fields == {"stage": "applied", "name": "mdm_owned"}
    assert outcome.state is not None and outcome.state.value("stage") == "signed"


def test_create_sets_the_owner_and_respects_the_roles() -> None:
    created = merge(CUSTOMER, None, Edit({"name": "New GmbH"}, stamp(1)), ALICE)
    assert created.status == "applied" and created.created and created.state is not None
    assert created.state.value("owner") == "alice" and created.state.value("team") == "north"
    # Refused creates answer not_found, as an existing record of others does
    # (issue 11, defect 11): no answer tells whether the id is in use.
    for_other = merge(CUSTOMER, None, Edit({"name": "X", "owner": "bob"}, stamp(1)), ALICE)
    assert (for_other.status, for_other.reason) == ("rejected", "not_found")
    missing = merge(CUSTOMER, None, Edit({"stage": "lead"}, stamp(1)), ALICE)
    assert (missing.status, missing.reason) == ("rejected", "not_found")
    admin = Actor("root", "admin", "root-phone")  # reads every customer: told what is missing
    missing = merge(CUSTOMER, None, Edit({"stage": "lead"}, stamp(1)), admin)
    assert (missing.status, missing.reason) == ("rejected", "validation")
    work_order = SCHEMA.types["work_order"]
    engineer = Actor("eve", "after_sales", "eve-phone")
    assert merge(work_order, None, Edit({"device": "d1"}, stamp(1)), engineer).reason == "not_found"
    assert merge(work_order, None, Edit({"device": "d1"}, stamp(1)), ALICE).reason == "not_found"


def test_others_records_are_not_found_and_deletes_need_the_role() -> None:
    assert (
        merge(CUSTOMER, customer(owner="bob"), Edit({"stage": "lost"}, stamp(5)), ALICE).reason
        == "not_found"
    )
    assert merge(CUSTOMER, customer(), Edit(None, stamp(5)), ALICE).reason == "forbidden"
    deleted = merge(CUSTOMER, customer(), Edit(None, stamp(5, 0, "crm")), CRM)
    assert deleted.deleted and deleted.state is not None and deleted.state.deleted is not None
    assert (
        merge(CUSTOMER, deleted.state, Edit({"stage": "lost"}, stamp(9)), ALICE).reason
        == "not_found"
    )


def test_an_after_sales_engineer_updates_only_its_own_work_orders() -> None:
    work_order = SCHEMA.types["work_order"]
    engineer = Actor("eve", "after_sales", "eve-phone")
    mine = RecordState({"device": ("d1", stamp(1)), "assignee": ("eve", stamp(1))}, version=1)
    theirs = RecordState({"device": ("d1", stamp(1)), "assignee": ("zed", stamp(1))}, version=1)
    assert (
        merge(work_order, mine, Edit({"status": "accepted"}, stamp(5)), engineer).status
        == "applied"
    )
    assert (
        merge(work_order, theirs, Edit({"status": "accepted"}, stamp(5)), engineer).reason
        == "not_found"
    )
    handover = merge(work_order, mine, Edit({"assignee": "zed"}, stamp(5)), engineer)
    assert handover.reason == "field_locked"


# ------------------------------------------------------------------ convergence

LWW_FIELDS = {
    "stage": st.sampled_from(["lead", "negotiation", "signed", "lost"]),
    "budget": st.integers(0, 10**6),
    "intended_model": st.sampled_from(["X1", "X9", "T4"]),
    "phone": st.sampled_from(["+49 1", "+49 2", "+43 3"]),
}
DEVICES = [
    Actor("alice", "sales", "a-phone"),
    Actor("alice", "sales", "a-tablet"),
    Actor("crm", "service", "crm"),
]


@st.composite
def edit_sets(draw: st.DrawFn) -> list[tuple[Actor, Edit]]:
    edits, used = [], set()
    for _ in range(draw(st.integers(1, 12))):
        actor = draw(st.sampled_from(DEVICES))
        names = draw(st.sets(st.sampled_from(sorted(LWW_FIELDS)), min_size=1))
        fields = {name: draw(LWW_FIELDS[name]) for name in names}
        if draw(st.booleans()):
            fields["name"] = draw(
                st.sampled_from(["A1", "B2"])
            )  # mdm: phones propose, the CRM sets
        when = Stamp(draw(st.integers(0, 50)), draw(st.integers(0, 3)), actor.device)
        if when in used:  # a device's clock never stamps two edits alike
            continue
        used.add(when)
        edits.append((actor, Edit(fields, when)))
    return edits


def apply_all(edits: list[tuple[Actor, Edit]]) -> dict[str, Any]:
    state: RecordState | None = RecordState(
        {"name": ("ACME", Stamp(0, 0, "crm")), "owner": ("alice", Stamp(0, 0, "crm"))}, version=1
    )
    for actor, edit in edits:
        outcome = merge(CUSTOMER, state, edit, actor)
        state = outcome.state or state
    assert state is not None
    return {
        name: value
        for name, (value, _) in state.fields.items()
        if CUSTOMER.fields[name].rule != "mdm"
    }


@settings(max_examples=200, deadline=None)
@given(edit_sets(), st.randoms(use_true_random=False))
def test_any_order_of_the_same_edits_converges_to_the_same_state(
    edits: list[tuple[Actor, Edit]], random: Any
) -> None:
    shuffled = list(edits)
    random.shuffle(shuffled)
    assert apply_all(edits) == apply_all(shuffled)
    # and each field holds the value of its newest edit
    final = apply_all(edits)
    for name in final:
        newest = max(
            (edit.stamp, edit.fields[name])
            for _, edit in edits
            if edit.fields and name in edit.fields
        )
        assert final[name] == newest[1]


def test_every_permutation_of_three_crossing_edits_converges() -> None:
    edits = [
        (DEVICES[0], Edit({"stage": "signed", "budget": 10}, Stamp(5, 0, "a-phone"))),
        (DEVICES[1], Edit({"stage": "lost"}, Stamp(7, 0, "a-tablet"))),
        (DEVICES[2], Edit({"budget": 20, "stage": "lead"}, Stamp(6, 0, "crm"))),
    ]
    results = {
        tuple(sorted(apply_all(list(order)).items())) for order in itertools.permutations(edits)
    }
    assert results == {(("budget", 20), ("stage", "lost"))}


DEVICE = SCHEMA.types["device"]
LOG = DEVICE.fields["service_log"]
ENGINEERS = [
    Actor("eng1", "after_sales", "eng1-phone"),
    Actor("eng2", "after_sales", "eng2-phone"),
    CRM,
]
ITEMS = st.sampled_from(["oil", "filter", "belt", "pump", "seal", "fan"])


@st.composite
def additions(draw: st.DrawFn) -> list[tuple[Actor, Edit]]:
    edits, used = [], set()
    for _ in range(draw(st.integers(1, 10))):
        actor = draw(st.sampled_from(ENGINEERS))
        items = draw(st.lists(ITEMS, max_size=4, unique=True))
        value: Any = items if draw(st.booleans()) else {"add": items}
        fields: dict[str, Any] = {"service_log": LOG.check(value)}
        if draw(st.booleans()):  # an lww field alongside
            fields["last_service"] = f"2026-05-{draw(st.integers(1, 28)):02d}"
        when = Stamp(draw(st.integers(0, 30)), draw(st.integers(0, 2)), actor.device)
        if when in used:  # a device's clock never stamps two edits alike
            continue
        used.add(when)
        edits.append((actor, Edit(fields, when)))
    return edits


def replay(edits: list[tuple[Actor, Edit]]) -> tuple[dict[str, Any], Any]:
    """The device's values and log after ``edits``, from a log of one entry."""
    values = {"serial": "12345678", "owner": "alice", "team": "north", "service_log": ["installed"]}
    state = RecordState({n: (v, Stamp(1, 0, "crm")) for n, v in values.items()}, version=1)
    for actor, edit in edits:
        state = merge(DEVICE, state, edit, actor).state or state
    return state.values(), state.log("service_log")


@settings(max_examples=200, deadline=None)
@given(additions(), st.randoms(use_true_random=False))
def test_additions_from_several_devices_in_any_order_converge_in_stamp_order(
    edits: list[tuple[Actor, Edit]], random: Any
) -> None:
    shuffled = list(edits)
    random.shuffle(shuffled)
    values, log = replay(edits)
    assert replay(shuffled) == (values, log)
    # every item added is kept once, at the earliest (stamp, position) that added it
    first: dict[str, tuple[Stamp, int]] = {"installed": (Stamp(1, 0, "crm"), 0)}
    for _, edit in edits:
        assert edit.fields is not None
        for position, item in enumerate(edit.fields["service_log"]["add"]):
            first[item] = min(first.get(item, (edit.stamp, position)), (edit.stamp, position))
    # (ties, only from one device stamping two edits alike: by item)
    assert values["service_log"] == sorted(first, key=lambda item: (*first[item], item))


def test_schema_object_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SCHEMA.types["customer"].scope = "team"  # type: ignore[misc]
    assert isinstance(SCHEMA, Schema)


def test_records_channels_are_for_the_teams_supervisors_dispatchers_and_admins() -> None:
    from fieldpush.identity.auth import Identity
    from fieldpush.identity.policy import may_publish, may_subscribe

    def who(role: str, *teams: str) -> Identity:
        return Identity("u", role, frozenset(teams), 0.0)

    assert may_subscribe(who("supervisor", "north"), "records:north")
    assert not may_subscribe(who("supervisor", "south"), "records:north")
    assert not may_subscribe(who("sales", "north"), "records:north")
    assert may_subscribe(who("dispatcher"), "records:north")
    assert may_subscribe(who("admin"), "records:north")
    assert not may_publish(who("admin"), "records:north")  # only the server announces changes
