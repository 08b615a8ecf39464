"""The audit entry format and its hash chain (fieldpush.audit.chain), pure."""

from __future__ import annotations

import hashlib
import json

import pytest

from fieldpush.audit.chain import (
    GENESIS,
    AuditDraft,
    ChainError,
    Head,
    canonical,
    chain,
    parse_entry,
)


def draft(n: int, **fields: tuple[object, object]) -> AuditDraft:
    return AuditDraft(
        ts=1_700_000_000_000 + n,
        actor="ann",
        role="admin",
        action="account.disable",
        target=f"user/u{n}",
        outcome="ok",
        fields=fields,
    )


def test_the_hash_is_sha256_over_prev_and_the_canonical_entry() -> None:
    (entry,) = chain(Head(), [draft(1, active=(True, False))])
    assert (entry.seq, entry.prev) == (1, GENESIS)
    body = {k: v for k, v in json.loads(entry.line).items() if k != "hash"}
    expected = hashlib.sha256(bytes(32) + canonical(body)).hexdigest()
    assert entry.hash == expected
    # Canonical: sorted keys, no spaces, ASCII.
    assert entry.line.startswith('{"action":"account.disable","actor":"ann","device":""')
    assert " " not in entry.line


def test_entries_follow_each_other() -> None:
    first, second = chain(Head(), [draft(1), draft(2)])
    assert (second.seq, second.prev) == (2, first.hash)
    assert chain(first.head, [draft(2)]) == [second]


def test_canonical_bytes_are_ascii_and_floats_are_strings() -> None:
    (entry,) = chain(Head(), [draft(1, budget=(12.5, 1e100), name=("Müller\n", "\U0001f600"))])
    assert entry.fields == {"budget": ["12.5", "1e+100"], "name": ["Müller\n", "\U0001f600"]}
    assert entry.line.isascii()
    assert '"M\\u00fcller\\n"' in entry.line and '"\\ud83d\\ude00"' in entry.line


def test_parse_accepts_what_chain_made() -> None:
    head = Head()
    for entry in chain(Head(), [draft(n) for n in range(1, 4)]):
        assert parse_entry(json.loads(entry.line), head) == entry
        head = entry.head


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda e: e.update(target="user/other"), "the hash does not match"),
        (lambda e: e.update(seq=3), "seq 3 found"),
        (lambda e: e.update(prev="1" * 64), "'prev' is not"),
        (lambda e: e.update(hash="X" * 64), "hex"),
        (lambda e: e.pop("outcome"), "keys"),
        (lambda e: e.update(ts=-1), "'ts'"),
        (lambda e: e.update(ts=True), "'ts'"),
        (lambda e: e.update(fields={"a": [1]}), "fields"),
        (lambda e: e.update(actor=None), "'actor'"),
    ],
)
def test_parse_names_the_seq_of_a_bad_entry(edit: object, reason: str) -> None:
    first, second = chain(Head(), [draft(1), draft(2)])
    raw = json.loads(second.line)
    edit(raw)  # type: ignore[operator]
    with pytest.raises(ChainError) as caught:
        parse_entry(raw, first.head)
    assert caught.value.seq == 2 and reason in caught.value.reason


def test_parse_refuses_what_is_not_an_object() -> None:
    with pytest.raises(ChainError, match="seq 1: not a JSON object"):
        parse_entry([1, 2], Head())
