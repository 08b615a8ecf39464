"""Sealing what the SDK keeps on the phone: AES-256-GCM with keys from the application.

:class:`RecordCipher` is built from one 32-byte store key (the application's,
kept in the platform keystore; :func:`resolve_key` checks it) and derives two
keys from it with HKDF-SHA256, so that no key serves two algorithms:

- an **AES-256-GCM** key: :meth:`RecordCipher.seal` encrypts with a fresh
  random 96-bit nonce per call (``os.urandom(12)``) and returns
  ``version (1 byte) || nonce (12) || ciphertext || tag (16)``;
  :meth:`RecordCipher.open` checks the version and the tag and raises
  :class:`~fieldpush_client.errors.StoreIntegrityError` on any mismatch, so a
  tampered, truncated or moved blob never comes back as data. The associated
  data (:func:`aad`) names what a blob belongs to; a blob copied into another
  row fails to open there.
- an **HMAC-SHA256** key: :meth:`RecordCipher.tag` turns an identifier (a
  record type, a record's type and id) into a 16-byte keyed tag, so that the
  store can look records up without keeping their ids in clear.

Random nonces: the chance of a repeat stays below 2**-32 up to 2**32 writes
under one key (NIST SP 800-38D, 8.3), far beyond what a phone writes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fieldpush_client.errors import StoreIntegrityError, StoreKeyError

__all__ = ["KEY_BYTES", "KeySource", "RecordCipher", "aad", "generate_key", "resolve_key"]

#: Length of a store key: AES-256.
KEY_BYTES: Final = 32
#: The first byte of every sealed blob: the format (AES-256-GCM, 96-bit nonce).
VERSION: Final = 1
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
#: Length of an identifier tag (a truncated HMAC-SHA256).
ID_TAG_BYTES: Final = 16

#: A store key: 32 bytes, or a synchronous callable returning them (a keystore lookup).
KeySource = bytes | bytearray | memoryview | Callable[[], bytes]


def generate_key() -> bytes:
    """A new random store key (keep it in the platform keystore, never next to the store)."""
    return secrets.token_bytes(KEY_BYTES)


def resolve_key(key: object) -> bytes:
    """The 32 bytes of ``key`` (bytes, or a callable returning them, called once);
    :class:`~fieldpush_client.errors.StoreKeyError` with the reason otherwise."""
    if callable(key):
        try:
            value = key()
        except Exception as exc:
            raise StoreKeyError(
                f"the key provider raised {type(exc).__name__}: {exc}", reason="provider_failed"
            ) from exc
        if hasattr(value, "close") and hasattr(value, "__await__"):
            value.close()  # a coroutine: never awaited, and never a key
            raise StoreKeyError(
                "the key provider returned a coroutine: the store opens synchronously,"
                " so give it a plain function (fetch the key from the keystore first)",
                reason="malformed",
            )
        return _check_bytes(value, "the key provider returned")
    return _check_bytes(key, "the store key is")


def _check_bytes(value: object, what: str) -> bytes:
    if isinstance(value, str):
        raise StoreKeyError(
            f"{what} a str, not 32 bytes: a passphrase or an encoded key is not a key"
            " (decode it, or keep 32 random bytes in the keystore: generate_key())",
            reason="malformed",
        )
    if not isinstance(value, bytes | bytearray | memoryview):
        raise StoreKeyError(f"{what} a {type(value).__name__}, not 32 bytes", reason="malformed")
    raw = bytes(value)
    if len(raw) != KEY_BYTES:
        raise StoreKeyError(
            f"{what} {len(raw)} bytes; AES-256 needs exactly {KEY_BYTES}",
            reason="malformed",
        )
    return raw


def aad(*parts: bytes) -> bytes:
    """Associated data from parts, each prefixed by its length (no two lists collide)."""
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"fieldpush store " + purpose
    ).derive(key)


class RecordCipher:
    """AES-256-GCM sealing and keyed identifier tags under one store key (see the module)."""

    __slots__ = ("_aead", "_id_mac")

    def __init__(self, key: bytes) -> None:
        key = _check_bytes(key, "the store key is")
        self._aead = AESGCM(_derive(key, b"v1 aes-256-gcm"))
        #: Keyed once; each tag works on a copy (cheaper than keying per call).
        self._id_mac = hmac.new(_derive(key, b"v1 id hmac-sha256"), digestmod=hashlib.sha256)

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``associated``, under a fresh nonce."""
        nonce = os.urandom(NONCE_BYTES)
        return bytes((VERSION,)) + nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, blob: bytes, associated: bytes) -> bytes:
        """The plaintext of a :meth:`seal` blob with the same ``associated``; raises
        :class:`~fieldpush_client.errors.StoreIntegrityError` if it does not
        authenticate (another key, a changed byte, another row, cut short)."""
        if not isinstance(blob, bytes) or len(blob) < 1 + NONCE_BYTES + TAG_BYTES:
            raise StoreIntegrityError("a sealed value is missing or cut short")
        if blob[0] != VERSION:
            raise StoreIntegrityError(f"a sealed value has an unknown format version {blob[0]}")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], associated)
        except InvalidTag as exc:
            raise StoreIntegrityError(
                "a sealed value does not authenticate: changed, moved to another row,"
                " or written under another key"
            ) from exc

    def tag(self, *parts: str) -> bytes:
        """A keyed 16-byte tag of an identifier (the same parts give the same tag)."""
        message = aad(*(part.encode() for part in parts))
        mac = self._id_mac.copy()
        mac.update(message)
        return mac.digest()[:ID_TAG_BYTES]
