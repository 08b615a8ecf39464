"""Offsets and the recovery rule, without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fieldpush.events.offsets import Offset, can_recover, new_epoch


@given(
    epoch=st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True),
    ms=st.integers(0, 2**48),
    seq=st.integers(0, 2**40),
)
def test_offset_round_trip(epoch: str, ms: int, seq: int) -> None:
    offset = Offset(epoch, ms, seq)
    assert Offset.parse(str(offset)) == offset
    assert offset.stream_id == f"{ms}-{seq}"


def test_malformed_offsets_do_not_parse() -> None:
    for text in ["", "abc", ":1-2", "e:1", "e:x-2", "e:1-y", "e:-1-2"]:
        assert Offset.parse(text) is None


def test_epochs_are_random() -> None:
    assert len({new_epoch() for _ in range(100)}) == 100


def test_recovery_rule() -> None:
    top = Offset("e", 50, 10)
    assert can_recover(Offset("e", 40, 10), top, None)  # at the top: nothing missing
    assert can_recover(Offset("e", 40, 7), top, 8)  # the next event is retained
    assert not can_recover(Offset("e", 40, 7), top, 9)  # event 8 was trimmed
    assert not can_recover(Offset("e", 40, 7), top, None)
    assert not can_recover(Offset("other", 40, 7), top, 8)  # history was reset
    assert not can_recover(Offset("e", 60, 11), top, None)  # ahead of the channel
    assert not can_recover(None, top, 1)
