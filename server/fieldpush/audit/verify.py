"""Verify an exported trail against signed checkpoints (pure: lines in, verdict out).

:func:`verify_trail` re-hashes every line from the genesis
(:func:`~fieldpush.audit.chain.parse_entry`) and then checks the checkpoints:
each must match the trail's entry at its size (its ``head``), and the trail
must be at least as long as the longest. It answers the first problem: an
edited entry (its hash), a deleted or reordered one (``seq`` or ``prev``), a
line that is not an entry (garbage, deep JSON), a truncated tail (shorter
than a checkpoint) or a trail rebuilt after a checkpoint (the head differs).
A checkpoint signed by another key is refused before, by
:func:`~fieldpush.audit.checkpoint.parse_checkpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fieldpush.audit.chain import ChainError, Head, parse_entry
from fieldpush.audit.checkpoint import Checkpoint

__all__ = ["Verdict", "verify_trail"]

#: Longest line read as an entry (an entry is a few hundred bytes; records'
#: fields can make it some kilobytes).
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """``bad_seq`` None: intact, ``head`` its end; else the first bad ``seq``
    and why (``line``: the line number where it was found)."""

    head: Head
    bad_seq: int | None = None
    reason: str = ""
    line: int = 0

    @property
    def intact(self) -> bool:
        return self.bad_seq is None


def verify_trail(
    lines: Iterable[bytes],
    checkpoints: list[Checkpoint],
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """The verdict on the trail ``lines`` (one entry per line, from seq 1),
    given checkpoints already checked for their signature. ``progress`` is
    called with the count of entries read every 100,000."""
    wanted: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        wanted.setdefault(checkpoint.size, []).append(checkpoint)
    head = Head()
    if any(c.head != head.hash for c in wanted.get(0, [])):
        return Verdict(head, 1, "a checkpoint of size 0 does not name the genesis")
    number = 0
    for number, line in enumerate(lines, 1):
        seq = head.size + 1
        if len(line) > MAX_LINE_BYTES:
            return Verdict(
                head, seq, f"line {number} is longer than {MAX_LINE_BYTES} bytes", number
            )
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            return Verdict(head, seq, f"line {number} is not JSON", number)
        try:
            head = parse_entry(raw, head).head
        except ChainError as exc:
            return Verdict(head, exc.seq, f"line {number}: {exc.reason}", number)
        for checkpoint in wanted.get(head.size, []):
            if checkpoint.head == head.hash:
                continue
            return Verdict(
                head,
                head.size,
                f"line {number}: the trail differs from the checkpoint of size {head.size} "
                f"(ts {checkpoint.ts})",
                number,
            )
        if progress is not None and head.size % 100_000 == 0:
            progress(head.size)
    longest = max(wanted, default=0)
    if longest > head.size:
        return Verdict(
            head,
            head.size + 1,
            f"the trail ends at seq {head.size} but a checkpoint (ts {wanted[longest][0].ts}) "
            f"saw {longest} entries: truncated",
            number,
        )
    return Verdict(head)
