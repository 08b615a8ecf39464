"""Progress of a long command on stderr: count, rate and time left.

On a terminal the one status line is redrawn in place (``\\r``, cleared to the
end) at most every :data:`TTY_REDRAW_S`; anywhere else (a pipe, a log file) a
plain line is written every ``every_s`` seconds, so logs stay readable; with
``quiet`` nothing is written. :meth:`Progress.end_line` ends the terminal
line so that what is printed next starts on a line of its own (the next
update draws a new status line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["TTY_REDRAW_S", "Progress"]

#: How often the terminal line is redrawn at most (seconds).
TTY_REDRAW_S = 0.2


class Progress:
    """Reports ``count`` items done of work measured in ``total`` units (bytes
    of a file: the time left is estimated from the units done so far)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        every_s: float,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = not quiet and stream.isatty()
        self._quiet = quiet
        self._total = total
        self._every_s = TTY_REDRAW_S if self._tty else every_s
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._drawn = False

    def update(self, count: int, done: int) -> None:
        """``count`` items done, ``done`` of ``total`` units; written when due."""
        now = self._clock()
        if self._quiet or now - self._last < self._every_s:
            return
        self._last = now
        line = self.line(count, done, now - self._started)
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def line(self, count: int, done: int, elapsed_s: float) -> str:
        """``12,000 records, 5,210/s, 40%, about 3 s left``."""
        rate = count / elapsed_s if elapsed_s > 0 else 0.0
        text = f"{count:,} records, {rate:,.0f}/s"
        if self._total > 0 and 0 < done <= self._total:
            fraction = done / self._total
            left_s = elapsed_s * (1 - fraction) / fraction
            text += f", {fraction:.0%}, about {_duration(left_s)} left"
        return text

    def end_line(self) -> None:
        """End the terminal status line, if one is drawn (nothing elsewhere)."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
