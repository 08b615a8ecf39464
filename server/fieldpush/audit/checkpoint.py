"""Signed checkpoints of the audit trail (pure: bytes in, bytes out).

A checkpoint is ``{size, head, ts, signature}``: the trail had ``size``
entries, the last one's hash was ``head`` (:data:`~fieldpush.audit.chain.GENESIS`
for size 0), at ``ts`` (ms); ``signature`` is the Ed25519 signature, hex, of
the canonical bytes (:func:`~fieldpush.audit.chain.canonical`) of ``{size,
head, ts}``. Whoever holds the public key can check that a trail was at least
that long and ended so at that time: a trail cut, edited or rebuilt after a
checkpoint no longer matches it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fieldpush.audit.chain import Head, canonical
from fieldpush.errors import ConfigError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_private_key",
    "load_public_key",
    "new_key_pair",
    "parse_checkpoint",
    "sign",
]


class CheckpointError(ValueError):
    """A checkpoint that is malformed or not signed by the key given."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    size: int
    head: str
    ts: int
    signature: str

    @property
    def trail_head(self) -> Head:
        return Head(self.size, self.head)

    def as_dict(self) -> dict[str, object]:
        return {"size": self.size, "head": self.head, "ts": self.ts, "signature": self.signature}


def _signed_bytes(size: int, head: str, ts: int) -> bytes:
    return canonical({"size": size, "head": head, "ts": ts})


def sign(key: Ed25519PrivateKey, head: Head, ts: int) -> Checkpoint:
    """The checkpoint of ``head`` at ``ts``."""
    signature = key.sign(_signed_bytes(head.size, head.hash, ts)).hex()
    return Checkpoint(head.size, head.hash, ts, signature)


def parse_checkpoint(raw: bytes, key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in ``raw`` (a file's bytes) if it is well formed and
    signed by ``key``; raises :class:`CheckpointError` saying why not."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError("not JSON") from exc
    if not isinstance(body, dict) or set(body) != {"size", "head", "ts", "signature"}:
        raise CheckpointError("not a checkpoint {size, head, ts, signature}")
    size, head, ts, signature = body["size"], body["head"], body["ts"], body["signature"]
    if not all(type(v) is int and v >= 0 for v in (size, ts)):
        raise CheckpointError("size and ts must be non-negative integers")
    if not isinstance(head, str) or len(head) != 64 or head.strip("0123456789abcdef"):
        raise CheckpointError("head must be 64 lowercase hex digits")
    if not isinstance(signature, str) or len(signature) != 128:
        raise CheckpointError("signature must be 128 hex digits")
    try:
        key.verify(bytes.fromhex(signature), _signed_bytes(size, head, ts))
    except (ValueError, InvalidSignature) as exc:
        raise CheckpointError("the signature does not verify with this public key") from exc
    return Checkpoint(size, head, ts, signature)


def new_key_pair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair: (private PEM, PKCS#8 unencrypted; public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def load_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ConfigError naming ``where`` otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{where}: not an Ed25519 key")
    return key


def load_public_key(pem: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ConfigError naming ``where`` otherwise."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: not an Ed25519 key")
    return key
