"""The node's TLS: one server :class:`ssl.SSLContext` built from the settings.

:func:`server_context` is called once, before the node listens (by
:func:`fieldpush.app.build_server`); uvicorn then serves HTTP and the
WebSocket upgrade on the same port through that context (docs/security.md,
"TLS"). Guarantees:

- No certificate configured (``ssl_certfile`` unset): ``None``, plain TCP.
- Every problem a file can have is a :class:`~fieldpush.errors.ConfigError`
  naming the setting, the file and what to do, raised before the port is
  bound: a file that cannot be read, one that holds no PEM certificate or key,
  a key that does not belong to the certificate, an encrypted key (never a
  password prompt on the terminal), a CA file without a certificate.
- TLS 1.2 at least; no renegotiation; OpenSSL's default ciphers.
- Client certificates are checked only against the CAs in ``ssl_ca_certs``,
  never against the system's trust store: a certificate some public CA signed
  is not a client certificate of this deployment.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import NoReturn

from fieldpush.errors import ConfigError
from fieldpush.settings import Settings

__all__ = ["server_context"]

_CLIENT_CERT_MODES = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL}


def _readable(setting: str, path: str) -> None:
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot read {setting} {path}: {exc.strerror}; give the path of a PEM file "
            "that the user running fieldpush can read"
        ) from None


class _EncryptedKey(Exception):
    """Raised by the password callback: the key file asks for a password."""


def _encrypted_key() -> NoReturn:
    raise _EncryptedKey


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context for ``settings`` (None without ``ssl_certfile``).
    Raises :class:`~fieldpush.errors.ConfigError` as the module docstring says."""
    certfile, keyfile = settings.ssl_certfile, settings.ssl_keyfile
    if certfile is None or keyfile is None:
        return None  # Settings.check() refused one without the other
    _readable("ssl_certfile", certfile)
    _readable("ssl_keyfile", keyfile)
    try:  # a certificate file that parses as a CA bundle holds a PEM certificate
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=certfile)
    except ssl.SSLError:
        raise ConfigError(
            f"ssl_certfile {certfile} holds no PEM certificate "
            "(expected -----BEGIN CERTIFICATE-----, the server's certificate first, "
            "then its intermediates)"
        ) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(certfile, keyfile, password=_encrypted_key)
    except _EncryptedKey:
        raise ConfigError(
            f"ssl_keyfile {keyfile} is encrypted; fieldpush needs an unencrypted key "
            f"(openssl pkey -in {keyfile} -out key.pem, readable only by the service user)"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"ssl_keyfile {keyfile} is not the private key of the certificate in "
                f"ssl_certfile {certfile}; give the key the certificate was issued for"
            ) from None
        raise ConfigError(
            f"ssl_keyfile {keyfile} holds no PEM private key "
            f"(expected -----BEGIN PRIVATE KEY-----): {exc.reason or exc}"
        ) from None
    if settings.ssl_ca_certs is not None:
        _readable("ssl_ca_certs", settings.ssl_ca_certs)
        try:
            context.load_verify_locations(cafile=settings.ssl_ca_certs)
        except ssl.SSLError:
            raise ConfigError(
                f"ssl_ca_certs {settings.ssl_ca_certs} holds no PEM certificate; give the "
                "certificate(s) of the CA that signs the client certificates"
            ) from None
        context.verify_mode = _CLIENT_CERT_MODES[settings.ssl_client_cert]
    return context
