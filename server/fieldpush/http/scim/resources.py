"""The SCIM User resource of fieldpush and what it means for a fieldpush account.

The models are scim2-models' ``User`` with one extension,
``urn:fieldpush:params:scim:schemas:extension:fieldpush:2.0:User`` (attribute
``teams``). :func:`account_of` is the one mapping from a resource to an account
(docs/security.md, "SCIM provisioning"):

- ``userName`` is the fieldpush user id (the token's ``sub``, the channel
  ``user:<userName>``): it must be valid in that channel name (printable, no
  space, at most 195 characters), else 400 ``invalidValue``. It is unique
  ignoring case (:func:`user_key`), as RFC 7643 makes ``userName`` case-insensitive;
- ``active`` (absent: true) decides whether the account is enabled;
- ``roles``: the ``primary`` one, else the first, gives the role; its ``value``
  must be one of :data:`fieldpush.identity.auth.ROLES`. No roles: the token's
  ``role`` claim decides;
- the extension's ``teams``: the team ids, each valid as ``team:<id>``. Absent:
  the token's ``teams`` claim decides; ``[]``: no team.

A stored resource is its creation-request form (no ``id``, no ``meta``, no
``password``: a password an identity provider sends is dropped, never stored).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from scim2_models import Context, Extension, Meta, User
from scim2_models.urn import URN

from fieldpush.backend.directory import DirectoryEntry
from fieldpush.http.scim.errors import ScimError
from fieldpush.identity.auth import ROLES
from fieldpush_client.protocol import is_channel, user_channel

__all__ = [
    "EXTENSION_SCHEMA",
    "Account",
    "FieldpushUser",
    "UserResource",
    "account_of",
    "decode",
    "encode",
    "etag",
    "user_key",
    "with_meta",
]

#: The schema URN of fieldpush's User extension.
EXTENSION_SCHEMA = "urn:fieldpush:params:scim:schemas:extension:fieldpush:2.0:User"


class FieldpushUser(Extension):
    """fieldpush's User extension: what the user may reach."""

    __schema__ = URN(EXTENSION_SCHEMA)

    teams: list[str] | None = None
    """The fieldpush team ids of the user (each valid as the channel
    team:<id>). Absent: the token's teams claim decides."""


#: The resource of ``/scim/v2/Users``.
UserResource = User[FieldpushUser]


@dataclass(frozen=True, slots=True)
class Account:
    """What a resource says of a fieldpush account: its user id, whether it is
    active, and its role and teams (None: the token's claims decide)."""

    user: str
    active: bool
    role: str | None
    teams: tuple[str, ...] | None


def user_key(user_name: str) -> str:
    """The form of a ``userName`` that is kept unique: NFC, lower case (as
    scim2-models compares case-insensitive strings in filters)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", user_name).lower())


def account_of(resource: UserResource) -> Account:
    """The account ``resource`` describes (module docstring), or 400 ``invalidValue``."""
    name = resource.user_name
    if not isinstance(name, str) or not is_channel(user_channel(name)):
        raise ScimError(
            400,
            "invalidValue",
            "userName must be a fieldpush user id: 1 to 195 printable characters, no space",
        )
    role = None
    if resource.roles:
        chosen = next((r for r in resource.roles if r.primary), resource.roles[0])
        if chosen.value not in ROLES:
            raise ScimError(
                400, "invalidValue", f"roles: the value must be one of {', '.join(sorted(ROLES))}"
            )
        role = chosen.value
    extension = resource[FieldpushUser]
    teams = None
    if extension is not None and extension.teams is not None:
        if not all(is_channel(f"team:{team}") for team in extension.teams):
            raise ScimError(
                400,
                "invalidValue",
                f"{EXTENSION_SCHEMA}:teams: each team id must be printable, without space",
            )
        teams = tuple(extension.teams)
    return Account(name, resource.active is not False, role, teams)


def encode(resource: UserResource) -> bytes:
    """The stored form of ``resource`` (module docstring)."""
    stored = resource.model_copy(update={"password": None})
    return json.dumps(stored.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)).encode()


def decode(entry: DirectoryEntry) -> UserResource:
    """The resource an entry stores, without its ``id`` and ``meta``."""
    resource: UserResource = UserResource.model_validate(json.loads(entry.document))
    return resource


def with_meta(entry: DirectoryEntry, location: str) -> UserResource:
    """The entry's resource as the server answers it: with its ``id`` and
    ``meta`` (``version`` ``W/"<n>"``, the ETag)."""
    resource = decode(entry)
    resource.id = entry.id
    resource.meta = Meta(
        resource_type="User",
        created=_time(entry.created_ms),
        last_modified=_time(entry.modified_ms),
        location=location,
        version=etag(entry.version),
    )
    return resource


def etag(version: int) -> str:
    """The weak ETag of a version: ``W/"<version>"``."""
    return f'W/"{version}"'


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
