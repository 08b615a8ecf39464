"""Where a subscription starts (``Subscription.begin``) and how it goes live:
pure, no I/O. The feed's position may be newer than the session's own read
(another session opened the feed and read later): the replay must then reach
the feed's position, or events between the two would be neither replayed nor
passed on live."""

from __future__ import annotations

from fieldpush.backend.base import History
from fieldpush.delivery.subscription import Subscription
from fieldpush.events.event import Event
from fieldpush.events.offsets import Offset


def at(seq: int, epoch: str = "e1") -> Offset:
    return Offset(epoch, 1000 + seq, seq)


def event(seq: int) -> Event:
    return Event("team:a", "e1", 1000 + seq, seq, "normal", b'{"id":"x"}')


def subscription(pushed: list[Event]) -> Subscription:
    def lost(channel: str) -> None:
        raise AssertionError(channel)

    return Subscription("team:a", pushed.append, None, lost)


def test_without_an_offset_it_starts_at_the_feed() -> None:
    sub = subscription([])
    assert sub.begin(None, None, at(7)) == (at(7), True, [])
    assert sub.last_seq == 7


def test_a_recovered_offset_replays_from_it_up_to_the_newer_of_read_and_feed() -> None:
    page = [event(4), event(5)]
    sub = subscription([])
    top, recovered, first = sub.begin(at(3), History(at(5), True, page), at(9))
    assert (top, recovered, first) == (at(9), True, page)  # the replay reads on to 9
    assert sub.last_seq == 3
    sub = subscription([])
    assert sub.begin(at(3), History(at(12), True, page), at(9))[0] == at(12)


def test_an_unrecoverable_or_foreign_offset_starts_at_the_newest_position() -> None:
    sub = subscription([])
    assert sub.begin(at(3), History(at(5), False), at(9)) == (at(9), False, [])
    assert sub.last_seq == 9
    sub = subscription([])
    assert sub.begin(None, History(at(5), True), at(2)) == (at(5), False, [])
    assert sub.last_seq == 5


def test_a_feed_in_another_epoch_than_the_read_means_not_recovered_from_the_feed() -> None:
    sub = subscription([])
    assert sub.begin(at(3), History(at(5), True, [event(4)]), at(1, "e2")) == (
        at(1, "e2"),
        False,
        [],
    )
    assert sub.last_seq == 1


def test_going_live_passes_on_only_what_the_replay_did_not_reach() -> None:
    pushed: list[Event] = []
    sub = subscription(pushed)
    sub.begin(at(3), History(at(5), True, [event(4), event(5)]), at(5))
    for seq in (5, 6, 7):
        sub.deliver(event(seq))  # held while replaying
    assert pushed == []
    sub.last_seq = 5  # the replay wrote 4 and 5
    sub.go_live()
    assert [e.seq for e in pushed] == [6, 7]
