"""Channel names: ``user:<id>``, ``team:<id>``, ``broadcast``, ``dispatch`` and
(an extension) ``records:<team id>``.

:func:`parse_channel` is the one definition of a valid name; the server's
permission checks, the token verifier and the SDK all go through it.
"""

from __future__ import annotations

from typing import Final

from fieldpush_client.protocol.errors import ProtocolError
from fieldpush_client.protocol.limits import MAX_CHANNEL_LENGTH

__all__ = ["CHANNEL_KINDS", "is_channel", "parse_channel", "user_channel"]

#: Kinds that name one user or team after a colon.
_SCOPED: Final = ("user", "team", "records")
#: Kinds that are a whole name on their own.
_SINGLE: Final = ("broadcast", "dispatch")

#: Channel kinds: ``user:<id>``, ``team:<id>``, ``broadcast``, ``dispatch``, and
#: (an extension) ``records:<team id>``: realtime record changes of a team's
#: records, for the supervisors, dispatchers and admins who may read them.
CHANNEL_KINDS: Final = ("user", "team", "broadcast", "dispatch", "records")


def parse_channel(name: object) -> tuple[str, str]:
    """Split a channel name into ``(kind, ident)``; ``ident`` is ``""`` for
    ``broadcast`` and ``dispatch``. Raises :class:`ProtocolError` when the name
    is not a valid channel: at most :data:`MAX_CHANNEL_LENGTH` characters, a
    lower-case kind, and an ident that is non-empty, printable and has no space."""
    if not isinstance(name, str) or not name or len(name) > MAX_CHANNEL_LENGTH:
        raise ProtocolError(f"invalid channel name {name!r}")
    kind, sep, ident = name.partition(":")
    if kind in _SINGLE and not sep:
        return kind, ""
    if kind in _SCOPED and sep and ident and ident.isprintable() and " " not in ident:
        return kind, ident
    raise ProtocolError(
        f"invalid channel name {name!r}: expected user:<id>, team:<id>, "
        "records:<team id>, broadcast or dispatch"
    )


def is_channel(name: object) -> bool:
    """Whether ``name`` is a valid channel name (:func:`parse_channel` accepts it)."""
    try:
        parse_channel(name)
    except ProtocolError:
        return False
    return True


def user_channel(user: str) -> str:
    """The inbox channel of ``user`` (every connection is subscribed to its own).
    Not checked: :func:`is_channel` says whether the result is valid."""
    return f"user:{user}"
