"""Who may change what (issue 12, item 7), through a real node on both
backends: supervisors read their teams' records and change nothing; a record's
team is one of its writer's teams unless the writer has ``all`` access; a schema
that grants what can never be done is refused at start, with the place named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fieldpush.identity.auth import ROLES
from fieldpush.sync.schema import Schema, load_schema
from tests.support.cli import run
from tests.support.node import NodeFactory, RunningNode
from tests.support.phones import phone
from tests.sync.test_sync import Api, mutation, now_ms


@pytest.fixture
async def node(start_node: NodeFactory) -> AsyncIterator[RunningNode]:
    """A node on each backend, with customers of north and south, a work order
    of eve's in north and a visit plan of alice's."""
    async with start_node() as running:
        crm = Api(running, "crm", "service")
        await crm.put("customer", "c-alice", name="ACME", owner="alice", team="north")
        await crm.put("customer", "c-sam", name="Sud SA", owner="sam", team="south")
        await crm.put("work_order", "w1", device="d1", assignee="eve", team="north")
        await crm.put("visit_plan", "v1", owner="alice", team="north", date="2026-12-01")
        yield running


async def applied_by(node: RunningNode, user: str) -> list[dict[str, Any]]:
    """The CRM feed's entries made by ``user``: what it changed or proposed."""
    feed = (await Api(node, "crm", "service").call("GET", "/v1/changes")).json()
    return [change for change in feed["changes"] if change["actor"] == user]


def status(result: dict[str, Any]) -> tuple[str, str | None]:
    return result["status"], result.get("reason")


# ---------------------------------------------------------------- supervisors


async def test_a_supervisor_changes_nothing(node: RunningNode) -> None:
    """The issue's defects: a supervisor of north set a customer's
    ``contract_no``, reassigned a work order (the engineer lost it from his
    pull) and created visit plans; now every change is refused and nothing is
    stored. Refusals of records it reads are ``forbidden``; creates
    ``not_found`` (as every refused create)."""
    boss = Api(node, "boss", "supervisor", ("north",))
    eve = Api(node, "eve", "after_sales", ("north",))
    _, eve_cursor = await eve.pull_all()
    results = await boss.push(
        mutation("m1", "c-alice", contract_no="K-1"),
        mutation("m2", "w1", "work_order", assignee="zed"),
        mutation("m3", "v2", "visit_plan", owner="alice", date="2026-12-02"),
        mutation("m4", "c-alice", stage="signed"),
        mutation("m5", "w1", "work_order", status="done"),
        mutation("m6", "w2", "work_order", device="d2", assignee="eve"),
        {"mid": "m7", "type": "visit_plan", "rid": "v1", "fields": None, "hlc": [now_ms(), 0]},
        {"mid": "m8", "type": "customer", "rid": "c-alice", "fields": None, "hlc": [now_ms(), 0]},
        mutation("m9", "c-new", name="New GmbH", owner="alice"),
        device="boss-phone",
    )
    assert [status(r) for r in results] == [
        ("rejected", "forbidden"),
        ("rejected", "forbidden"),
        ("rejected", "not_found"),
        ("rejected", "forbidden"),
        ("rejected", "forbidden"),
        ("rejected", "not_found"),
        ("rejected", "forbidden"),
        ("rejected", "forbidden"),
        ("rejected", "not_found"),
    ]
    assert all("record" not in r for r in results)
    assert await applied_by(node, "boss") == []
    seen, _ = await boss.pull_all()
    assert "contract_no" not in seen[("customer", "c-alice")]
    assert seen[("work_order", "w1")]["assignee"] == "eve"
    assert ("visit_plan", "v2") not in seen and ("visit_plan", "v1") in seen
    changed, _ = await eve.pull_all(eve_cursor)
    assert changed == {}  # the engineer keeps his work order


async def test_a_supervisor_on_the_socket_is_refused_the_same(node: RunningNode) -> None:
    async with phone(node, "boss", role="supervisor", teams=("north",), device="b") as boss:
        reply = await boss.request(
            {
                "type": "mutate",
                "id": 1,
                "mutations": [
                    mutation("s1", "c-alice", contract_no="K-2"),
                    mutation("s2", "w1", "work_order", assignee="boss"),
                ],
            }
        )
    assert [status(r) for r in reply["results"]] == [("rejected", "forbidden")] * 2
    assert await applied_by(node, "boss") == []


async def test_writers_still_do_what_the_default_schema_gives_them(node: RunningNode) -> None:
    """The roles that took over from the supervisor: an admin sets contract
    numbers, a dispatcher assigns and creates work orders, an admin plans visits."""
    admin = Api(node, "root", "admin")
    dispatcher = Api(node, "disp", "dispatcher")
    results = [
        *await admin.push(mutation("a1", "c-alice", contract_no="K-1")),
        *await dispatcher.push(mutation("d1", "w1", "work_order", assignee="zed")),
        *await dispatcher.push(
            mutation("d2", "w2", "work_order", device="d2", assignee="eve", team="north")
        ),
        *await admin.push(
            mutation("a2", "v2", "visit_plan", owner="alice", team="north", date="2026-12-02")
        ),
    ]
    assert [status(r) for r in results] == [("applied", None)] * 4
    alice = Api(node, "alice", "sales", ("north",))
    refused = await alice.push(mutation("s1", "c-alice", contract_no="K-9"))
    assert status(refused[0]) == ("rejected", "field_locked")  # a writer, not in roles


# ---------------------------------------------------------------- teams


async def test_a_sales_user_creates_customers_only_in_its_teams(node: RunningNode) -> None:
    """The issue's defect: a sales user of north created a customer in south.
    A create whose team is not one of the writer's teams answers ``not_found``,
    as every refused create; a team that is not a string is ``validation``."""
    alice = Api(node, "alice", "sales", ("north",))
    hostile: list[tuple[Any, tuple[str, str | None]]] = [
        ("south", ("rejected", "not_found")),
        ("", ("rejected", "not_found")),
        ("north\n", ("rejected", "not_found")),
        ("nor\x00th", ("rejected", "not_found")),
        ("NORTH", ("rejected", "not_found")),
        (["north"], ("rejected", "validation")),
        (7, ("rejected", "validation")),
        (10**30, ("rejected", "validation")),
        ({"id": "north"}, ("rejected", "validation")),
        (True, ("rejected", "validation")),
    ]
    for n, (team, expected) in enumerate(hostile):
        (result,) = await alice.push(mutation(f"h{n}", f"c-h{n}", name="X", team=team))
        assert status(result) == expected, (team, result)
        assert "record" not in result
    assert await applied_by(node, "alice") == []
    every, _ = await Api(node, "root", "admin").pull_all(types=["customer"])
    assert set(every) == {("customer", "c-alice"), ("customer", "c-sam")}

    own_team = await alice.push(
        mutation("ok1", "c-n1", name="Nord KG", team="north"),
        mutation("ok2", "c-n2", name="Nord AG"),  # the token's one team
        mutation("ok3", "f-1", "follow_up", customer="c-n1", note="call"),
    )
    assert [status(r) for r in own_team] == [("applied", None)] * 3
    seen, _ = await alice.pull_all()
    assert seen[("customer", "c-n2")]["team"] == "north"
    assert seen[("follow_up", "f-1")]["team"] == "north"


async def test_a_writer_of_several_teams_or_none_names_one_of_them(node: RunningNode) -> None:
    both = Api(node, "ann", "sales", ("north", "west"))
    results = await both.push(
        mutation("b1", "c-b1", name="Which"),  # two teams: it must say which
        mutation("b2", "c-b2", name="West", team="west"),
        mutation("b3", "c-b3", name="South", team="south"),
    )
    assert [status(r) for r in results] == [
        ("rejected", "not_found"),
        ("applied", None),
        ("rejected", "not_found"),
    ]
    none = Api(node, "nomad", "sales")
    results = await none.push(
        mutation("n1", "c-n1", name="Nowhere"), mutation("n2", "c-n2", name="N", team="north")
    )
    assert [status(r) for r in results] == [("rejected", "not_found")] * 2


async def test_writers_with_all_access_place_records_in_any_team(node: RunningNode) -> None:
    admin = Api(node, "root", "admin")
    dispatcher = Api(node, "disp", "dispatcher", ("north",))
    results = [
        *await admin.push(mutation("a1", "c-s2", name="Sud 2", owner="sam", team="south")),
        *await dispatcher.push(
            mutation("d1", "w9", "work_order", device="d9", assignee="zed", team="south"),
            mutation("d2", "w1", "work_order", team="south"),  # moves it
        ),
    ]
    assert [status(r) for r in results] == [("applied", None)] * 3
    seen, _ = await Api(node, "sam", "sales", ("south",)).pull_all(types=["customer"])
    assert ("customer", "c-s2") in seen


# ---------------------------------------------------------------- start


def test_serve_refuses_a_schema_that_grants_what_no_role_can_do(tmp_path: Path) -> None:
    """The shipped schema listed supervisors under ``work_order.create`` and
    ``visit_plan.delete``, which could never succeed: such a schema stops
    ``fieldpush serve`` with the file, the place and the problem."""
    schema = tmp_path / "schema.toml"
    schema.write_text(
        "[types.visit_plan]\n"
        'scope = "owner"\n'
        'team = "team"\n'
        'create = ["admin"]\n'
        'delete = ["supervisor", "admin"]\n'
        'read = { supervisor = "team", admin = "all" }\n'
        'write = { admin = "all" }\n'
        "[types.visit_plan.fields]\n"
        'owner = { type = "string" }\n'
        'team = { type = "string" }\n'
    )
    mappings = tmp_path / "mappings.toml"
    mappings.write_text("")
    env = {"FIELDPUSH_SCHEMA_PATH": str(schema), "FIELDPUSH_MAPPINGS_PATH": str(mappings)}
    result = run("serve", "--port", "0", env=env, timeout=15)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"fieldpush serve: configuration error: {schema}: visit_plan.delete: supervisor"
        in result.stderr
    ), result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the docs' table

ROOT = Path(__file__).resolve().parents[2]
ROLE_ORDER = ("sales", "after_sales", "supervisor", "dispatcher", "admin", "service")


def permission_rows(schema: Schema) -> list[list[str]]:
    """The permission table of docs/sync.md as the schema says it: per role and
    record type it reads, its scopes, create, delete, the locked fields it may
    edit (the CRM: all it writes) and the fields hidden from it."""
    assert set(ROLE_ORDER) == ROLES
    rows = []
    for role in ROLE_ORDER:
        for rtype in schema.types.values():
            if role not in rtype.read:
                continue
            write = rtype.write.get(role)
            locked = [
                name
                for name, spec in sorted(rtype.fields.items())
                if spec.rule == "locked" and write and (role in spec.roles or role == "service")
            ]
            hidden = [
                name
                for name, spec in sorted(rtype.fields.items())
                if spec.read is not None and role not in spec.read
            ]
            rows.append(
                [
                    role,
                    rtype.name,
                    rtype.read[role],
                    write or "—",
                    "yes" if role in rtype.create else "—",
                    "yes" if role in rtype.delete else "—",
                    ", ".join(locked) or "—",
                    ", ".join(hidden) or "—",
                ]
            )
    return rows


def test_the_permission_table_in_the_docs_is_the_shipped_schemas() -> None:
    text = (ROOT / "docs" / "sync.md").read_text()
    table = text.split("<!-- permissions: begin -->")[1].split("<!-- permissions: end -->")[0]
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    documented = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert documented == permission_rows(load_schema(ROOT / "config" / "schema.toml"))
    packaged = ROOT / "server" / "fieldpush" / "defaults" / "schema.toml"
    assert packaged.read_bytes() == (ROOT / "config" / "schema.toml").read_bytes()
    supervisor = [row for row in documented if row[0] == "supervisor"]
    assert supervisor and all(row[3:7] == ["—"] * 4 for row in supervisor)  # read only
