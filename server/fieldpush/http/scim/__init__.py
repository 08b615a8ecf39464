"""SCIM 2.0 provisioning (RFC 7643/7644): an identity provider or HR system
creates, updates, disables and deletes fieldpush users (docs/security.md,
"SCIM provisioning"). One module per job:

- :mod:`~fieldpush.http.scim.routes` — the endpoints under ``/scim/v2``;
- :mod:`~fieldpush.http.scim.auth` — the bearer secret ``scim_token``;
- :mod:`~fieldpush.http.scim.errors` — RFC 7644 §3.12 error bodies, the media type;
- :mod:`~fieldpush.http.scim.resources` — the User resource and its mapping to an account;
- :mod:`~fieldpush.http.scim.provisioning` — the operations on the directory and the account;
- :mod:`~fieldpush.http.scim.discovery` — ServiceProviderConfig, ResourceTypes, Schemas.

Resources, validation, PATCH, filters and the discovery documents are
scim2-models'.
"""

from fieldpush.http.scim.routes import scim_routes

__all__ = ["scim_routes"]
