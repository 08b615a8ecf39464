"""Channel positions (offsets) and the recovery rule. Pure: no I/O.

An offset names a position in one channel's history: ``<epoch>:<ms>-<seq>``.

- ``seq`` counts the channel's events from 1 and never repeats within an epoch,
  so a gap in ``seq`` is a gap in delivery;
- ``ms`` is the server's clock when the event was stored (the event's ``ts``);
  with ``seq`` it forms the Redis Stream entry id, so an offset locates its
  entry without a lookup;
- ``epoch`` changes whenever the channel's history is lost or reset, so an
  offset from an older history is never mistaken for a position in this one.

Clients treat offsets as opaque strings.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass

__all__ = ["Offset", "can_recover", "new_epoch"]


def new_epoch() -> str:
    """A fresh random epoch (8 URL-safe characters, 48 random bits).

    Epochs need to be unique, not secret: ``random`` (seeded from the OS at
    start) spares a system call on every publish, which offers one."""
    return base64.urlsafe_b64encode(random.randbytes(6)).decode()


@dataclass(frozen=True, slots=True)
class Offset:
    """A position in one channel: after the event numbered ``seq``.

    ``seq == 0`` is the position before the first event of the epoch.
    """

    epoch: str
    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Offset | None:
        """Parse an offset; ``None`` when the text is not one (callers treat a
        foreign offset like one from an older epoch: not recoverable)."""
        epoch, sep, rest = text.rpartition(":")
        ms, dash, seq = rest.partition("-")
        if not (sep and dash and epoch and ms.isdigit() and seq.isdigit()):
            return None
        return cls(epoch, int(ms), int(seq))

    @property
    def stream_id(self) -> str:
        """The Redis Stream entry id of the event at this position."""
        return f"{self.ms}-{self.seq}"


def can_recover(since: Offset | None, top: Offset, first_retained_seq: int | None) -> bool:
    """Whether every event after ``since`` up to ``top`` is still retained.

    ``first_retained_seq`` is the ``seq`` of the oldest event the history still
    holds after ``since`` (``None`` when it holds none). Recovery needs the same
    epoch, a position not ahead of the channel, and no hole: the first retained
    event after ``since`` must be the very next one.
    """
    if since is None:
        return False
    if since.epoch != top.epoch or since.seq > top.seq:
        return False
    if since.seq == top.seq:
        return True
    return first_retained_seq == since.seq + 1
