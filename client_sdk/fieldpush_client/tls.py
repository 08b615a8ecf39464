"""How the SDK's clients trust a node's certificate (docs/sdk.md, "TLS").

Every client (:class:`~fieldpush_client.client.PushClient`,
:class:`~fieldpush_client.http.DispatcherClient`) takes ``ssl=``:

- ``None`` (the default): the system's trust store, through the libraries'
  defaults (``websockets`` for ``wss://``, ``httpx`` for ``https://``).
- a path (``str`` or ``os.PathLike``) of a PEM file of CA certificates: only
  these CAs are trusted, the host name is checked.
- an :class:`ssl.SSLContext` of the application's own, used as it is: the way
  to present a client certificate (``context.load_cert_chain(...)``) or to pin
  other settings.

A certificate that does not verify fails the connection attempt with
:class:`ssl.SSLCertVerificationError` ("certificate verify failed"); the SDK
never turns verification off.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["SSLOption", "ssl_context"]

#: What ``ssl=`` accepts (see the module docstring).
SSLOption = ssl.SSLContext | str | os.PathLike[str]


def ssl_context(option: SSLOption | None) -> ssl.SSLContext | None:
    """The context for ``option``: ``None`` stays ``None`` (the libraries'
    defaults), a CA file becomes a verifying client context that trusts only
    it, a context is returned as it is. A CA file that cannot be read raises
    :class:`OSError` (``FileNotFoundError``...) here, not at the first connection."""
    if option is None or isinstance(option, ssl.SSLContext):
        return option
    return ssl.create_default_context(cafile=os.fspath(option))
