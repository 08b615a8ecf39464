"""Where the SDK keeps the offsets it has processed, per channel.

The client resumes from these after any disconnect. :class:`MemoryOffsetStore`
lives as long as the process; an app that must survive restarts passes its own
:class:`OffsetStore` (a file, SQLite, the platform's key-value store).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MemoryOffsetStore", "OffsetStore"]


class OffsetStore(Protocol):
    """The last processed offset of each channel. Calls are synchronous and quick."""

    def get_all(self) -> dict[str, str]:
        """Every channel with its last processed offset."""

    def set(self, channel: str, offset: str) -> None:
        """Record that everything up to ``offset`` in ``channel`` was processed."""

    def forget(self, channel: str) -> None:
        """Drop a channel (after unsubscribing)."""


class MemoryOffsetStore:
    """Offsets in a dict."""

    def __init__(self, offsets: dict[str, str] | None = None) -> None:
        self._offsets = dict(offsets or {})

    def get_all(self) -> dict[str, str]:
        return dict(self._offsets)

    def set(self, channel: str, offset: str) -> None:
        self._offsets[channel] = offset

    def forget(self, channel: str) -> None:
        self._offsets.pop(channel, None)
