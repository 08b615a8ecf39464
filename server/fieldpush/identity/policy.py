"""Who may subscribe to and publish on which channel (docs/protocol.md section 1).

| channel      | subscribe                          | publish                    |
|--------------|------------------------------------|----------------------------|
| user:<id>    | that user; admin                   | dispatcher, service, admin |
| team:<id>    | members; dispatcher; admin         | dispatcher, service, admin |
| broadcast    | everyone                           | dispatcher, service, admin |
| dispatch     | dispatcher, supervisor, admin      | service, admin (and the server) |
| records:<id> | supervisors of that team; dispatcher; admin | the server (sync) |

Pure functions of a verified :class:`~fieldpush.identity.auth.Identity` and a valid channel name.
"""

from __future__ import annotations

from typing import Final

from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import parse_channel

__all__ = [
    "PUBLISHER_ROLES",
    "VIEWER_ROLES",
    "may_publish",
    "may_see_presence",
    "may_subscribe",
    "presence_teams",
]

#: Roles that may call ``POST /v1/publish`` at all.
PUBLISHER_ROLES: Final = frozenset({"dispatcher", "service", "admin"})
#: Roles that may watch the ``dispatch`` channel (and, later, receipts and presence).
VIEWER_ROLES: Final = frozenset({"dispatcher", "supervisor", "admin"})


def may_subscribe(identity: Identity, channel: str) -> bool:
    kind, ident = parse_channel(channel)
    role = identity.role
    if kind == "user":
        return ident == identity.user or role == "admin"
    if kind == "team":
        return ident in identity.teams or role in ("dispatcher", "admin")
    if kind == "broadcast":
        return True
    if kind == "records":
        return (role == "supervisor" and ident in identity.teams) or role in ("dispatcher", "admin")
    return role in VIEWER_ROLES


def may_publish(identity: Identity, channel: str) -> bool:
    kind, _ = parse_channel(channel)
    if kind == "records":
        return False
    if kind == "dispatch":
        return identity.role in ("service", "admin")
    return identity.role in PUBLISHER_ROLES


def may_see_presence(identity: Identity, channel: str) -> bool:
    """Whether ``identity`` may read who is subscribed to ``channel``
    (``GET /v1/presence``): dispatchers and admins every channel's;
    supervisors only their own teams' ``team:<id>`` channels (any other
    channel would list users of other teams); no one else."""
    if identity.role in ("dispatcher", "admin"):
        return True
    if identity.role != "supervisor":
        return False
    kind, ident = parse_channel(channel)
    return kind == "team" and ident in identity.teams


def presence_teams(identity: Identity) -> frozenset[str] | None:
    """The teams whose users' presence ``identity`` may read
    (``GET /v1/presence/users/{id}``): None for all users (dispatchers,
    admins), the own teams for supervisors, none for anyone else."""
    if identity.role in ("dispatcher", "admin"):
        return None
    return identity.teams if identity.role == "supervisor" else frozenset()
