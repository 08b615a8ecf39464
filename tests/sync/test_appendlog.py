"""The ``append`` rule as pure functions: the wire forms of a log edit, the
merge (additions kept in stamp order, idempotent, explicit removal, a full
log refused), the stored form and its compatibility with plain lists.
Convergence under any order of the same additions is with the other rules'
in tests/sync/test_sync_rules.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fieldpush.backend.base import StoredRecord
from fieldpush.sync.appendlog import Entry
from fieldpush.sync.codec import decode_state, encode_state, pack
from fieldpush.sync.hlc import Stamp
from fieldpush.sync.rules import Actor, Edit, RecordState, Status, merge
from fieldpush.sync.schema import InvalidValue, load_schema

ROOT = Path(__file__).resolve().parents[2]
DEVICE = load_schema(ROOT / "config" / "schema.toml").types["device"]
LOG = DEVICE.fields["service_log"]
ENG1 = Actor("eng1", "after_sales", "eng1-phone")
ENG2 = Actor("eng2", "after_sales", "eng2-phone")
CRM = Actor("crm", "service", "crm")
ALICE = Actor("alice", "sales", "alice-phone", frozenset({"north"}))


def device(log: list[str] | None = None) -> RecordState:
    base: dict[str, Any] = {"serial": "12345678", "owner": "alice", "team": "north"}
    state = RecordState({n: (v, Stamp(1, 0, "crm")) for n, v in base.items()}, version=1)
    if log is not None:
        outcome = merge(
            DEVICE, state, Edit({"service_log": LOG.check(log)}, Stamp(1, 0, "crm")), CRM
        )
        assert outcome.state is not None
        state = outcome.state
    return state


def add(state: RecordState, actor: Actor, wall: int, value: Any) -> Any:
    return merge(
        DEVICE, state, Edit({"service_log": LOG.check(value)}, Stamp(wall, 0, actor.device)), actor
    )


def test_both_wire_forms_check_into_one_edit() -> None:
    assert LOG.check(["oil", "filter"]) == {"add": ["oil", "filter"], "remove": []}
    assert LOG.check({"remove": ["oil"]}) == {"add": [], "remove": ["oil"]}
    assert LOG.check({"add": ["a"], "remove": ["b"]}) == {"add": ["a"], "remove": ["b"]}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["oil", 3], "service_log[] must be a string"),
        ([{"nested": ["deep"]}], "service_log[] must be a string"),
        ([["oil"]], "service_log[] must be a string"),
        ({"add": "oil"}, "service_log.add must be a list"),
        ({"append": ["oil"]}, 'must be a list of items or {"add"'),
        ({}, 'must be a list of items or {"add"'),
        ("oil", 'must be a list of items or {"add"'),
        (["x"] * 501, "service_log.add may have at most 500 items, not 501"),
        ({"remove": ["x"] * 501}, "service_log.remove may have at most 500 items, not 501"),
        ({"add": ["oil"], "remove": ["oil"]}, "['oil'] both added and removed"),
    ],
)
def test_a_hostile_log_edit_is_refused_naming_the_problem(value: Any, problem: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        LOG.check(value)
    assert problem in str(caught.value)


def test_concurrent_additions_are_all_kept_in_stamp_order() -> None:
    start = device(["installed"])
    late = add(start, ENG2, 20, ["installed", "belt"])
    assert late.status == Status.APPLIED and late.state is not None
    early = add(late.state, ENG1, 10, ["installed", "filter"])
    assert early.status == Status.APPLIED  # not a conflict
    assert early.state is not None
    assert early.state.values()["service_log"] == ["installed", "filter", "belt"]
    assert early.changed["service_log"] == (["installed", "belt"], ["installed", "filter", "belt"])


def test_resending_what_is_there_adds_nothing_and_writes_nothing() -> None:
    start = device(["installed", "filter"])
    again = add(start, ENG1, 30, ["installed", "filter"])
    assert again.status == Status.APPLIED and again.state is None and not again.changed


def test_removal_is_explicit_and_removing_what_is_not_there_changes_nothing() -> None:
    start = device(["installed", "wrong", "filter"])
    kept = add(start, ENG1, 30, ["installed"])  # a shorter list removes nothing
    assert kept.state is None
    removed = add(start, ENG1, 30, {"remove": ["wrong"]})
    assert removed.state is not None
    assert removed.state.values()["service_log"] == ["installed", "filter"]
    absent = add(removed.state, ENG2, 31, {"remove": ["wrong"]})
    assert absent.status == Status.APPLIED and absent.state is None


def test_a_log_that_would_outgrow_max_length_is_refused_whole() -> None:
    start = device([f"entry {i}" for i in range(500)])
    full = add(start, ENG1, 30, ["one more"])
    assert (full.status, full.reason, full.state) == (Status.REJECTED, "validation", None)
    assert full.message == "service_log would have more than 500 items"
    swap = add(start, ENG1, 30, {"add": ["one more"], "remove": ["entry 0"]})
    assert swap.state is not None and swap.state.values()["service_log"][-1] == "one more"


def test_who_may_add_is_who_may_write_the_record() -> None:
    refused = add(device(["installed"]), ALICE, 30, ["installed", "mine"])  # sales reads only
    assert (refused.status, refused.reason, refused.state) == (Status.REJECTED, "forbidden", None)


def test_the_stored_form_keeps_per_item_stamps_and_old_plain_lists_still_merge() -> None:
    state = add(device(["installed"]), ENG1, 10, ["filter"]).state
    assert state is not None
    loaded = decode_state(StoredRecord(2, encode_state(state)))
    assert loaded is not None
    assert loaded.values() == state.values() and loaded.logs == state.logs
    assert loaded.log("service_log").entries()[1] == Entry(Stamp(10, 0, "eng1-phone"), 0, "filter")
    # a record written before the rule: the log is a plain list under "f", no "l"
    old = pack(
        {
            "f": {
                "serial": ["12345678", 1, 0, "crm"],
                "owner": ["alice", 1, 0, "crm"],
                "service_log": [["installed", "oil"], 5, 0, "crm"],
            },
            "x": None,
        }
    )
    legacy = decode_state(StoredRecord(3, old))
    assert legacy is not None and legacy.logs == {}
    assert legacy.values()["service_log"] == ["installed", "oil"]
    before = add(legacy, ENG1, 3, ["filter"])  # stamped before the old list was written
    assert before.state is not None
    assert before.state.values()["service_log"] == ["filter", "installed", "oil"]
