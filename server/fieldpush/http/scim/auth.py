"""Who may call SCIM: the holder of the one bearer secret ``scim_token``.

The secret is compared in constant time (``hmac.compare_digest``). No
``scim_token`` set: SCIM is off, and every ``/scim/v2/...`` path answers 404
(before any check, so nothing else is told). A request without exactly one
``Authorization: Bearer <scim_token>`` header answers 401 with
``WWW-Authenticate: Bearer``; the refusal is logged, never the header.
"""

from __future__ import annotations

import hmac
import logging

from fieldpush.http.scim.errors import ScimError
from fieldpush.settings import Secret

__all__ = ["authorize"]

log = logging.getLogger("fieldpush.api")


def authorize(token: Secret | None, headers: list[str], where: str) -> None:
    """Return if ``headers`` (every ``Authorization`` value sent) hold the one
    right bearer ``token``; else the SCIM error (404 when ``token`` is None, 401)."""
    if token is None:
        raise ScimError(404, None, "SCIM provisioning is not enabled; set scim_token")
    if len(headers) > 1:
        log.info("%s refused: more than one Authorization header", where)
        raise ScimError(401, None, "more than one Authorization header")
    scheme, _, given = (headers[0] if headers else "").partition(" ")
    expected = token.reveal().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        log.info("%s refused: no or a wrong SCIM bearer token", where)
        raise ScimError(401, None, "missing or wrong 'Authorization: Bearer <scim_token>' header")
