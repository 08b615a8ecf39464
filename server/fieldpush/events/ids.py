"""Ids of events and sessions, unique across the cluster."""

from __future__ import annotations

import itertools
import secrets

__all__ = ["Ids"]


class Ids:
    """A process's id source: a random prefix and a counter (cheaper than
    uuid4, which reads the OS's random source every time). Ids of two
    processes differ by their prefix; ids of one process by the counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix if prefix is not None else secrets.token_hex(6)
        self._counter = itertools.count(1)

    def new_event_id(self) -> str:
        """A unique event id."""
        return f"{self._prefix}{next(self._counter):08x}"

    def new_session_id(self) -> str:
        """A unique session id, made like event ids (and never equal to one)."""
        return f"s{self._prefix}{next(self._counter):08x}"
