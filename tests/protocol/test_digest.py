"""Drift digests (fieldpush_client.protocol.digest, docs/protocol.md 3.8): the
canonical JSON, the pinned hash that outside clients check against, sums that
do not depend on order, the parsers' refusals; and the SDK's repair plan
(fieldpush_client.drift). Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldpush_client.drift import MAX_REPAIR_BYTES, BucketTooLarge, differing_buckets, plan_repairs
from fieldpush_client.protocol import (
    BUCKETS,
    Digest,
    DriftReport,
    TypeDrift,
    bucket_of,
    canonical,
    digest,
    parse_digest,
    parse_repair,
    record_hash,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": [True, None, "x"]}, '{"a":[true,null,"x"],"b":1}'),
        ({"name": 'Müller\n"q"'}, '{"name":"Müller\\n\\"q\\""}'),
        (
            {"n": 1.0, "m": 0.1, "big": 1e21, "small": 1.5e-7, "neg": -2.5},
            '{"big":1e+21,"m":0.1,"n":1,"neg":-2.5,"small":1.5e-7}',
        ),
        ({"x": 123456789012345680000.0, "y": 0.000001}, '{"x":123456789012345680000,"y":0.000001}'),
        # keys sorted by UTF-16 code units: "z" < "\u20ac" < "\U0001f600" (a surrogate pair)
        ({"\U0001f600": 2, "\u20ac": 1, "z": 3}, '{"z":3,"\u20ac":1,"\U0001f600":2}'),
        ({"range": {"min": 20000, "max": 35000}}, '{"range":{"max":35000,"min":20000}}'),
    ],
)
def test_canonical_json_is_rfc_8785(value: Any, text: str) -> None:
    assert canonical(value) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_the_fast_path_writes_what_the_written_out_rules_write(value: Any) -> None:
    assert canonical(value) == digest._jcs(value)
    assert json.loads(canonical(value)) == value


def test_canonical_json_refuses_what_json_cannot_carry() -> None:
    for bad in (float("nan"), float("inf"), b"bytes", {1: "a"}):
        with pytest.raises(TypeError):
            canonical(bad)


def test_the_hash_of_a_record_is_pinned() -> None:
    """The example of docs/protocol.md 3.8: an outside client must get these."""
    fields = {"name": "ACME", "budget": 1000, "vip": True}
    assert canonical(fields) == '{"budget":1000,"name":"ACME","vip":true}'
    assert f"{record_hash('c-17', fields):016x}" == "0bc7de2210432fdd"
    assert bucket_of("c-17") == 252
    pair = Digest().add(record_hash("c-17", fields)).add(record_hash("c-18", {}))
    assert pair.to_wire() == {"count": 2, "hash": "54dabc9a93c1f4d2"}


records = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(-5, 5) | st.text(max_size=3)),
    max_size=12,
)


@given(records, st.randoms())
def test_a_digest_is_the_same_in_any_order_and_incremental(
    held: dict[str, dict[str, Any]], rng: Any
) -> None:
    hashes = [record_hash(rid, fields) for rid, fields in held.items()]
    forward = Digest()
    for hashed in hashes:
        forward = forward.add(hashed)
    shuffled = list(hashes)
    rng.shuffle(shuffled)
    backward = Digest()
    for hashed in shuffled:
        backward = backward.add(hashed)
    assert forward == backward and forward.count == len(held)
    if hashes:
        assert forward.remove(hashes[0]).add(hashes[0]) == forward
    for hashed in hashes:
        forward = forward.remove(hashed)
    assert forward == Digest()


def test_a_digest_parses_back_and_refuses_anything_else() -> None:
    wire = Digest(3, 2**64 - 1).to_wire()
    assert wire == {"count": 3, "hash": "ffffffffffffffff"}
    assert parse_digest({"customer": wire}) == {"customer": Digest(3, 2**64 - 1)}
    assert parse_digest(None) is None
    for bad in (
        [],
        {"customer": {"count": 3}},
        {"customer": {"count": 3.0, "hash": "0" * 16}},
        {"customer": {"count": 3, "hash": "0" * 15}},
        {"": {"count": 0, "hash": "0" * 16}},
        {"x" * 201: {"count": 0, "hash": "0" * 16}},
        {f"t{n}": {"count": 0, "hash": "0" * 16} for n in range(65)},
    ):
        with pytest.raises(ValueError):
            parse_digest(bad)


def test_a_repair_parses_and_refuses_rids_of_other_buckets() -> None:
    bucket = bucket_of("c1")
    parsed = parse_repair({"customer": {"buckets": [bucket], "held": {"c1": "00" * 8}}})
    assert parsed is not None and parsed["customer"].held == {"c1": 0}
    with pytest.raises(ValueError, match="rids of those buckets"):
        parse_repair({"customer": {"buckets": [(bucket + 1) % BUCKETS], "held": {"c1": "00" * 8}}})
    with pytest.raises(ValueError, match="buckets"):
        parse_repair({"customer": {"buckets": [True], "held": {}}})


def test_a_drift_report_round_trips() -> None:
    report = DriftReport(
        ("customer", "device"),
        {"customer": TypeDrift(Digest(2, 7), {3: Digest(1, 4), 200: Digest(1, 3)})},
    )
    wire = json.loads(json.dumps(report.to_wire()))
    assert wire["differs"]["customer"]["buckets"] == {
        "3": [1, f"{4:016x}"],
        "200": [1, f"{3:016x}"],
    }
    assert DriftReport.from_wire(wire) == report
    with pytest.raises(ValueError):
        DriftReport.from_wire(
            {"compared": [], "differs": {"c": {"count": 1, "hash": "x", "buckets": {}}}}
        )


def _server_view(held: dict[str, int]) -> TypeDrift:
    buckets: dict[int, Digest] = {}
    total = Digest()
    for rid, hashed in held.items():
        buckets[bucket_of(rid)] = buckets.get(bucket_of(rid), Digest()).add(hashed)
        total = total.add(hashed)
    return TypeDrift(total, buckets)


def test_the_repair_plan_asks_for_the_differing_buckets_only_in_frames_that_fit() -> None:
    truth = {f"r{n}": n for n in range(3000)}
    theirs = _server_view(truth)
    phone = dict(truth)
    del phone["r7"]
    phone["r8"] = 12345
    assert differing_buckets(phone, theirs) == sorted({bucket_of("r7"), bucket_of("r8")})
    (only,) = plan_repairs(phone, theirs)
    assert only.buckets == {bucket_of("r7"), bucket_of("r8")}
    assert only.held == {rid: h for rid, h in phone.items() if bucket_of(rid) in only.buckets}

    # The server holds none of them: every bucket differs, in several requests.
    requests = list(plan_repairs(truth, _server_view({})))
    assert len(requests) > 1
    assert set().union(*(r.buckets for r in requests)) == {bucket_of(rid) for rid in truth}
    for request in requests:
        assert sum(len(rid) + 24 for rid in request.held) <= MAX_REPAIR_BYTES


def test_a_bucket_too_large_for_one_request_says_so() -> None:
    crowded = {f"{'x' * 150}{n}": n for n in range(100_000)}
    crowded = {rid: h for rid, h in crowded.items() if bucket_of(rid) == 9}
    with pytest.raises(BucketTooLarge):
        list(plan_repairs(crowded, _server_view({})))
