"""``python -m bench.audit``: the audit trail's verifier rate, and the chaining cost.

Writes a trail of ``--entries`` entries (default 1,000,000, each like an
account change: actor, role, target, one field ``[old, new]``) chained by
:func:`fieldpush.audit.chain.chain`, with a signed checkpoint every
``--checkpoint-every`` entries, into a temporary directory; then runs
``fieldpush audit verify`` on it as a subprocess (what an auditor runs:
reading the file, JSON parsing, canonical re-encoding, SHA-256, checkpoint
checks) and reports entries per second, best of ``--repeat``. The time to
chain (what a node spends per entry before storing it) is reported too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fieldpush.audit.chain import AuditDraft, Head, chain
from fieldpush.audit.checkpoint import load_private_key, new_key_pair, sign

BATCH = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def drafts(start: int, count: int) -> list[AuditDraft]:
    return [
        AuditDraft(
            ts=1_764_000_000_000 + n,
            actor=f"user{n % 500}",
            role="sales",
            device=f"phone-{n % 700}",
            action="sync.write",
            target=f"customer/c-{n % 20_000}",
            outcome="applied",
            fields={"budget": (n, n + 100)},
        )
        for n in range(start, start + count)
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        private, public = new_key_pair()
        (folder / "public.pem").write_bytes(public)
        key = load_private_key(private, "bench")
        checkpoints = folder / "checkpoints"
        checkpoints.mkdir()
        trail = folder / "trail.jsonl"
        head, chaining = Head(), 0.0
        with trail.open("w", encoding="ascii") as out:
            for start in range(0, args.entries, BATCH):
                batch = drafts(start, min(BATCH, args.entries - start))
                began = time.perf_counter()
                entries = chain(head, batch)
                chaining += time.perf_counter() - began
                for entry in entries:
                    out.write(entry.line + "\n")
                    if entry.seq % args.checkpoint_every == 0:
                        signed = sign(key, entry.head, entry.ts)
                        path = checkpoints / f"checkpoint-{entry.seq:012d}.json"
                        path.write_text(json.dumps(signed.as_dict()))
                head = entries[-1].head
        size_mb = trail.stat().st_size / 1e6
        command = [
            str(Path(sys.executable).parent / "fieldpush"), "audit", "verify", str(trail),
            "--checkpoints", str(checkpoints), "--public-key", str(folder / "public.pem"),
        ]  # fmt: skip
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - began)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
        best = min(times)
        checkpoint_count = args.entries // args.checkpoint_every
        print(
            f"trail: {args.entries:,} entries, {size_mb:.0f} MB, {checkpoint_count:,} checkpoints"
        )
        print(f"chain (node side): {args.entries / chaining:,.0f} entries/s "
              f"({chaining / args.entries * 1e6:.1f} us/entry)")  # fmt: skip
        print(f"verify (fieldpush audit verify, best of {args.repeat}): {best:.1f} s, "
              f"{args.entries / best:,.0f} entries/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
