"""``fieldpush audit keygen | verify`` as a subprocess (issue 12, item 5): an
intact trail exits 0; an edited, deleted or reordered entry, a truncated tail,
a checkpoint signed by another key and garbage lines exit 1 naming the first
bad seq, never with a traceback; usage errors exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from fieldpush.audit.chain import AuditDraft, Head, chain
from fieldpush.audit.checkpoint import load_private_key, sign
from tests.support.cli import run


def drafts(n: int) -> list[AuditDraft]:
    return [
        AuditDraft(
            ts=1_700_000_000_000 + i,
            actor="ann",
            role="admin",
            action="account.disable",
            target=f"user/u{i}",
            outcome="ok",
            fields={"active": (True, False)},
        )
        for i in range(n)
    ]


class Case:
    """A trail of 10 entries, checkpoints at 5 and 10, and the keys, in ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        keys = tmp / "keys"
        made = run("audit", "keygen", "--out", str(keys))
        assert made.returncode == 0, made.stderr
        self.public = keys / "audit-public.pem"
        self.key = load_private_key((keys / "audit-signing.pem").read_bytes(), "test")
        self.entries = chain(Head(), drafts(10))
        self.lines = [e.line for e in self.entries]
        self.checkpoints = tmp / "checkpoints"
        self.checkpoints.mkdir()
        for entry in (self.entries[4], self.entries[9]):
            self.checkpoint(entry.head, 1_700_000_000_100 + entry.seq)
        self.trail = tmp / "trail.jsonl"

    def checkpoint(self, head: Head, ts: int, key: object = None) -> None:
        signed = sign(key or self.key, head, ts)  # type: ignore[arg-type]
        path = self.checkpoints / f"checkpoint-{head.size:012d}-{ts}.json"
        path.write_text(json.dumps(signed.as_dict()))

    def verify(self, lines: list[str], *extra: str) -> tuple[int, str, str]:
        self.trail.write_text("".join(line + "\n" for line in lines))
        done = run(
            "audit", "verify", str(self.trail), "--checkpoints", str(self.checkpoints),
            "--public-key", str(self.public), *extra,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def case(tmp_path: Path) -> Case:
    return Case(tmp_path)


def test_an_intact_trail_exits_0(case: Case) -> None:
    code, out, _ = case.verify(case.lines)
    assert code == 0
    assert out.startswith("intact: 10 entries") and "2 checkpoint(s)" in out


def edited(lines: list[str]) -> list[str]:
    entry = json.loads(lines[6])
    entry["fields"]["active"] = [True, True]
    return [*lines[:6], json.dumps(entry, sort_keys=True, separators=(",", ":")), *lines[7:]]


@pytest.mark.parametrize(
    ("tamper", "seq", "why"),
    [
        (edited, 7, "hash does not match"),
        (lambda lines: lines[:3] + lines[4:], 4, "seq 5 found"),
        (lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]], 3, "seq 4 found"),
        (lambda lines: lines[:8], 9, "truncated"),
        (lambda lines: lines[:4], 5, "truncated"),
        (lambda lines: [*lines[:5], "{not json", *lines[6:]], 6, "line 6 is not JSON"),
        (lambda lines: [*lines[:5], "[" * 200_000, *lines[6:]], 6, "line 6 is not JSON"),
        (lambda lines: [*lines[:5], "", *lines[5:]], 6, "line 6 is not JSON"),
        (lambda lines: [*lines[:5], '{"seq": 6}', *lines[6:]], 6, "keys"),
        (lambda lines: [*lines[:5], "\x00\xff garbage", *lines[6:]], 6, "not JSON"),
    ],
)
def test_tampering_exits_1_naming_the_first_bad_seq(
    case: Case, tamper: Callable[[list[str]], list[str]], seq: int, why: str
) -> None:
    code, _, err = case.verify(tamper(case.lines))
    assert code == 1, err
    assert f"NOT INTACT: seq {seq}:" in err and why in err


def test_a_trail_rebuilt_after_a_checkpoint_exits_1(case: Case) -> None:
    """Whoever edits an entry and re-hashes everything after it still differs
    from the checkpoint that follows."""
    rebuilt = chain(case.entries[5].head, drafts(4))  # other entries 7..10, chained
    code, _, err = case.verify([*case.lines[:6], *(e.line for e in rebuilt)])
    assert code == 1 and "seq 10:" in err and "differs from the checkpoint" in err


def test_a_checkpoint_signed_by_another_key_exits_1(case: Case, tmp_path: Path) -> None:
    other = run("audit", "keygen", "--out", str(tmp_path / "other"))
    assert other.returncode == 0
    key = load_private_key((tmp_path / "other" / "audit-signing.pem").read_bytes(), "x")
    case.checkpoint(case.entries[7].head, 1_700_000_000_999, key)
    code, _, err = case.verify(case.lines)
    assert code == 1 and "NOT INTACT: seq 8:" in err and "does not verify" in err


def test_as_of_ignores_checkpoints_written_after_the_export(case: Case) -> None:
    assert case.verify(case.lines[:5])[0] == 1
    code, out, _ = case.verify(case.lines[:5], "--as-of", str(1_700_000_000_105))
    assert code == 0 and "1 checkpoint(s)" in out


def test_usage_errors_exit_2(case: Case, tmp_path: Path) -> None:
    (tmp_path / "not-a-key.pem").write_text("nope")
    code, _, err = case.verify(case.lines, "--public-key", str(tmp_path / "not-a-key.pem"))
    assert code == 2 and "not a PEM public key" in err
    assert run("audit", "verify", str(tmp_path / "missing")).returncode == 2
    done = run(
        "audit", "verify", str(tmp_path / "missing.jsonl"), "--checkpoints",
        str(case.checkpoints), "--public-key", str(case.public),
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_keygen_never_overwrites(case: Case) -> None:
    again = run("audit", "keygen", "--out", str(case.public.parent))
    assert again.returncode == 1 and "exists" in again.stderr
    assert (case.public.parent / "audit-signing.pem").stat().st_mode & 0o777 == 0o600


def test_serve_refuses_a_forged_audit_file_naming_the_seq(tmp_path: Path) -> None:
    lines = [e.line for e in chain(Head(), drafts(3))]
    lines[1] = lines[1].replace('"actor":"ann"', '"actor":"eve"')
    forged = tmp_path / "audit.jsonl"
    forged.write_text("".join(line + "\n" for line in lines))
    done = run("serve", "--port", "0", "--dev", env={"FIELDPUSH_AUDIT_FILE": str(forged)})
    assert done.returncode == 2
    assert f"{forged}: seq 2: the hash does not match" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_an_unusable_signing_key(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("not a key")
    env = {"FIELDPUSH_AUDIT_SIGNING_KEY": str(tmp_path / "key.pem")}
    done = run("serve", "--port", "0", "--dev", env=env)
    assert done.returncode == 2 and "audit_signing_key" in done.stderr
    env = {"FIELDPUSH_AUDIT_SIGNING_KEY": str(tmp_path / "missing.pem")}
    done = run("serve", "--port", "0", "--dev", env=env)
    assert done.returncode == 2 and "cannot read" in done.stderr
