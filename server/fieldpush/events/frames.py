"""WebSocket frames written by the server. Pure: no I/O.

Server-to-client frames are never masked (RFC 6455 section 5.1) and fieldpush
negotiates no extension, so the bytes of a frame depend only on its payload:
an event's frame is built once and written unchanged to every subscriber.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["PING_FRAME", "data_frame"]

_TEXT: Final = 0x81  # FIN + text opcode
_BINARY: Final = 0x82  # FIN + binary opcode

#: An empty, unmasked ping.
PING_FRAME: Final = b"\x89\x00"


def data_frame(payload: bytes, binary: bool) -> bytes:
    """One complete, unfragmented data frame carrying ``payload``."""
    first = _BINARY if binary else _TEXT
    length = len(payload)
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload
