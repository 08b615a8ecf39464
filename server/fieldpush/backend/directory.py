"""The user directory: the SCIM user resources that an identity provider keeps here.

Every node answers SCIM (``fieldpush.http.scim``), so the resources live in the
backend: in Redis for a cluster, in memory for one node. The directory stores
each resource as opaque bytes (its SCIM document, which only the SCIM layer
reads) with the fields it indexes and versions.

Guarantees, which both implementations keep and ``tests/backend/test_directory.py``
checks:

- **Compare-and-set.** :meth:`Directory.put` writes only if the entry is still at
  ``expected_version`` (0: it must not exist yet), and a written entry's
  version is one more; so two nodes that read the same version cannot both
  write, and an ETag (``W/"<version>"``) names exactly one state.
- **Unique user keys.** No two entries have the same ``user_key`` (the form of
  ``userName`` that the caller compares, see :class:`DirectoryEntry`): a put
  that would make two is refused, atomically with the write.
- **Stable order.** :meth:`Directory.page` lists entries by ``id`` (code point
  order), so paging with offsets sees each entry once if none is added or
  deleted in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

__all__ = [
    "Directory",
    "DirectoryEntry",
    "NameTaken",
    "PutResult",
    "VersionMismatch",
    "Written",
]


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One user resource.

    ``id`` is the server-assigned SCIM id; ``user_name`` the SCIM ``userName``
    as sent (the fieldpush user id); ``user_key`` the form the directory keeps
    unique (the caller's choice: the SCIM layer uses the case-folded
    ``userName``); ``version`` counts the writes (1 after the first);
    ``created_ms`` and ``modified_ms`` are Unix times in milliseconds;
    ``document`` is the resource as the SCIM layer encodes it.
    """

    id: str
    user_name: str
    user_key: str
    version: int
    created_ms: int
    modified_ms: int
    document: bytes


@dataclass(frozen=True, slots=True)
class Written:
    """:meth:`Directory.put` status: stored, as ``entry`` (its new version)."""

    entry: DirectoryEntry


@dataclass(frozen=True, slots=True)
class VersionMismatch:
    """:meth:`Directory.put` status: nothing written, because the entry is not at
    the expected version (``current``: its version now, 0 if there is none)."""

    current: int


@dataclass(frozen=True, slots=True)
class NameTaken:
    """:meth:`Directory.put` status: nothing written, because another entry
    (``holder``, its id) has the same ``user_key``."""

    holder: str


#: What :meth:`Directory.put` says.
PutResult: TypeAlias = Written | VersionMismatch | NameTaken


class Directory(Protocol):
    """The user resources of SCIM provisioning; see the module docstring.
    Every method raises ``BackendUnavailable`` when the backend cannot answer
    (a write may then have happened or not)."""

    async def get(self, entry_id: str) -> DirectoryEntry | None:
        """The entry with this id, or None."""

    async def by_user_key(self, user_key: str) -> DirectoryEntry | None:
        """The entry whose ``user_key`` is this, or None."""

    async def count(self) -> int:
        """How many entries there are."""

    async def page(self, offset: int, limit: int) -> list[DirectoryEntry]:
        """Up to ``limit`` entries after the first ``offset``, in ``id`` order."""

    async def put(self, entry: DirectoryEntry, expected_version: int) -> PutResult:
        """Store ``entry`` (its ``version`` and ``created_ms`` are ignored: the
        version becomes ``expected_version + 1``; creation keeps the first
        ``created_ms``) if the stored one is at ``expected_version`` (0: none is
        stored) and no other entry has its ``user_key``."""

    async def delete(self, entry_id: str, expected_version: int | None) -> bool:
        """Remove the entry if it exists and (unless ``expected_version`` is
        None) is at that version; whether it was removed."""
