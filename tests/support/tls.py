"""Throwaway certificates for the TLS tests, made with the ``cryptography`` package.

:func:`make_certificates` writes, into one directory: a CA and a server
certificate it signs for ``localhost``, ``127.0.0.1`` and ``::1``; a second
CA for client certificates and a client certificate it signs; and the broken
files the configuration errors are tested with (a key of another certificate,
an encrypted key, a file that is no PEM). The ``tls_files`` fixture
(tests/conftest.py) makes them once per session.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as exc:  # the test extra brings it
    raise RuntimeError(
        "the TLS tests need the cryptography package: pip install -e '.[test]'"
    ) from exc

__all__ = ["TLSFiles", "client_context", "make_certificates"]

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TLSFiles:
    """Paths (as strings, the way settings hold them) of the PEM files."""

    ca: str
    cert: str
    key: str
    client_ca: str
    client_cert: str
    client_key: str
    #: The key of another certificate: not ``cert``'s.
    other_key: str
    #: ``key`` encrypted with the password ``secret``.
    encrypted_key: str
    #: A text file that holds no PEM block.
    not_pem: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: _Key,
    issuer: tuple[x509.Certificate, _Key] | None,
    *,
    ca: bool,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _write_key(path: Path, key: _Key, password: bytes | None = None) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return str(path)


def _write_cert(path: Path, certificate: x509.Certificate) -> str:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(path)


def make_certificates(directory: Path) -> TLSFiles:
    """Write the files of :class:`TLSFiles` into ``directory``."""
    ca_key, client_ca_key, server_key, client_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(5)
    )
    ca = _certificate("fieldpush test CA", ca_key, None, ca=True)
    client_ca = _certificate("fieldpush test client CA", client_ca_key, None, ca=True)
    server = _certificate(
        "localhost",
        server_key,
        (ca, ca_key),
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client = _certificate(
        "pixel-7", client_key, (client_ca, client_ca_key), ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )  # fmt: skip
    not_pem = directory / "not-pem.txt"
    not_pem.write_text("this is no certificate\n")
    return TLSFiles(
        ca=_write_cert(directory / "ca.pem", ca),
        cert=_write_cert(directory / "server.pem", server),
        key=_write_key(directory / "server.key", server_key),
        client_ca=_write_cert(directory / "client-ca.pem", client_ca),
        client_cert=_write_cert(directory / "client.pem", client),
        client_key=_write_key(directory / "client.key", client_key),
        other_key=_write_key(directory / "other.key", other_key),
        encrypted_key=_write_key(directory / "server-encrypted.key", server_key, b"secret"),
        not_pem=str(not_pem),
    )


def client_context(files: TLSFiles, *, with_client_cert: bool = False) -> ssl.SSLContext:
    """A client context that trusts the test CA, with the client certificate if asked."""
    context = ssl.create_default_context(cafile=files.ca)
    if with_client_cert:
        context.load_cert_chain(files.client_cert, files.client_key)
    return context
