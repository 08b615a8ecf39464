"""The HTTP API's routes, assembled for the app (docs/protocol.md section 2).

Every call but health, readiness and metrics needs ``Authorization: Bearer
<JWT>``; errors are ``{"error": {"code", "message"}}`` (:mod:`fieldpush.http.toolkit`).
``POST /v1/publish`` is also served by :class:`PublishEndpoint` directly, ahead
of Starlette (see :func:`fieldpush.app.create_app`).
"""

from __future__ import annotations

from fieldpush.http.admin import admin_routes
from fieldpush.http.audit import audit_routes
from fieldpush.http.dispatch import dispatch_routes
from fieldpush.http.downloads import download_routes
from fieldpush.http.export import export_routes
from fieldpush.http.files import files_routes
from fieldpush.http.health import health_routes
from fieldpush.http.poll import poll_routes
from fieldpush.http.publish import PublishEndpoint, publish_routes
from fieldpush.http.scim import scim_routes
from fieldpush.http.sync import sync_routes
from fieldpush.http.toolkit import exception_handlers

__all__ = ["PublishEndpoint", "exception_handlers", "routes"]

routes = [
    *publish_routes,
    *poll_routes,
    *health_routes,
    *dispatch_routes,
    *sync_routes,
    *admin_routes,
    *audit_routes,
    *export_routes,
    *files_routes,
    *download_routes,  # after the tus HEAD: HEAD /v1/files/{id} is tus's
    *scim_routes,
]
