"""What the SCIM service says of itself (RFC 7644 §4): ``/ServiceProviderConfig``,
``/ResourceTypes`` and ``/Schemas``, built by scim2-models from the models.

One resource type, ``User`` at ``/Users``, with fieldpush's extension (not
required). Capabilities: PATCH yes; filters yes, at most :data:`MAX_RESULTS`
resources per page (``count`` is clamped to it); ETags yes (weak, ``W/"<n>"``,
``If-Match`` honoured); bulk, sort and password change no; authentication by
one bearer token.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    ListResponse,
    Meta,
    Patch,
    ResourceType,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

from fieldpush.http.scim.resources import FieldpushUser, UserResource

__all__ = ["MAX_RESULTS", "PROVIDER", "config", "listing", "resource_types", "schemas"]

#: The most resources one list answer holds (``filter.maxResults``).
MAX_RESULTS = 200

PROVIDER = ScimProvider(
    models=[User, FieldpushUser],
    resource_types=[ResourceType.from_resource(UserResource)],
    config=ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="Authorization: Bearer <scim_token> (the server's setting)",
                primary=True,
            )
        ],
    ),
)
"""The service: its models, its resource type and its configuration."""


def config(base: str) -> dict[str, Any]:
    """The ``/ServiceProviderConfig`` document; ``base``: the service's URL."""
    assert PROVIDER.config is not None  # set above
    document = PROVIDER.config.model_copy(
        update={
            "meta": Meta(
                resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"
            )
        }
    )
    return document.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)


def resource_types(base: str) -> list[dict[str, Any]]:
    """Each ``/ResourceTypes/<id>`` document."""
    return [
        kind.model_copy(
            update={
                "meta": Meta(
                    resource_type="ResourceType", location=f"{base}/ResourceTypes/{kind.id}"
                )
            }
        ).model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        for kind in PROVIDER.resource_types
    ]


def schemas(base: str) -> list[dict[str, Any]]:
    """Each ``/Schemas/<urn>`` document."""
    return [
        schema.model_copy(
            update={"meta": Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")}
        ).model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        for schema in PROVIDER.schemas
    ]


def listing(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """A ListResponse of discovery documents (all of them: no paging)."""
    return {
        "schemas": [str(ListResponse.__schema__)],
        "totalResults": len(documents),
        "startIndex": 1,
        "itemsPerPage": len(documents),
        "Resources": documents,
    }
