"""SCIM error answers (RFC 7644 §3.12) and the SCIM media type.

Every SCIM request that fails ends with :class:`ScimError`, answered as
``{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400",
"scimType": "invalidFilter", "detail": "…"}`` with content type
``application/scim+json``. The library's own errors are turned into one here:
a ``SCIMException`` or a pydantic ``ValidationError`` of scim2-models (their
``scimType`` kept; pydantic's first error only, named by its attribute path),
and the toolkit's :class:`~fieldpush.http.toolkit.HTTPError` of the body reader
(413 stays 413; a body that is not JSON, nested too deeply or not an object is
400 ``invalidSyntax``). ``detail`` is safe to show: it never carries a secret.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from scim2_models import Error, SCIMException
from starlette.responses import Response

from fieldpush.errors import FieldpushError
from fieldpush.http.toolkit import HTTPError

__all__ = ["SCIM_MEDIA_TYPE", "ScimError", "scim_response"]

#: RFC 7644 §3.1: the media type of every SCIM body.
SCIM_MEDIA_TYPE = "application/scim+json"


def scim_response(
    body: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A SCIM answer: ``body`` as compact JSON (none for 204), ``application/scim+json``."""
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return Response(
        content,
        status_code=status,
        headers=headers,
        media_type=None if body is None else SCIM_MEDIA_TYPE,
    )


class ScimError(FieldpushError):
    """Ends a SCIM request with ``status``, the RFC's ``scimType`` (None for the
    statuses that have none: 401, 404, 412, 413, 503, ...) and ``detail``; a
    401 also carries ``WWW-Authenticate: Bearer``."""

    def __init__(self, status: int, scim_type: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail

    @classmethod
    def of(cls, exc: SCIMException | ValidationError | HTTPError) -> ScimError:
        """The SCIM error for a scim2-models exception, a validation error of one
        of its models, or the body reader's HTTPError."""
        if isinstance(exc, HTTPError):
            if exc.status == 413:
                return cls(413, None, exc.message)
            return cls(400, "invalidSyntax", exc.message)
        error = (
            exc.to_error()
            if isinstance(exc, SCIMException)
            else Error.from_validation_errors(exc)[0]
        )
        return cls(error.status or 400, error.scim_type, error.detail or str(exc))

    def response(self) -> Response:
        body = Error(status=self.status, scim_type=self.scim_type, detail=self.detail)
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return scim_response(body.model_dump(), self.status, headers)
