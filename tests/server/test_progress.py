"""fieldpush.cli.progress: what is written when, on a terminal and elsewhere (pure)."""

from __future__ import annotations

import io

from fieldpush.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_line_is_redrawn_in_place_with_rate_and_time_left() -> None:
    stream, clock = Terminal(), Clock()
    progress = Progress(stream, total=1000, every_s=10, clock=clock)
    clock.now += 2
    progress.update(500, 250)
    clock.now += 0.1  # too soon to redraw
    progress.update(600, 300)
    clock.now += 2
    progress.update(1000, 500)
    progress.end_line()
    assert stream.getvalue() == (
        "\r500 records, 250/s, 25%, about 6 s left\x1b[K"
        "\r1,000 records, 244/s, 50%, about 4 s left\x1b[K\n"
    )


def test_elsewhere_a_plain_line_every_so_often_and_nothing_when_quiet() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, total=0, every_s=10, clock=clock)
    for _ in range(25):
        clock.now += 1
        progress.update(7, 0)
    progress.end_line()
    assert stream.getvalue().splitlines() == ["7 records, 1/s", "7 records, 0/s"]
    quiet = Terminal()
    silent = Progress(quiet, total=10, every_s=0, quiet=True, clock=clock)
    clock.now += 5
    silent.update(1, 1)
    silent.end_line()
    assert quiet.getvalue() == ""
