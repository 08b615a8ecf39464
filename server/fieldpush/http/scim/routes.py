"""The SCIM 2.0 endpoints (RFC 7644) under ``/scim/v2``: ``Users`` and the
discovery documents. docs/security.md ("SCIM provisioning") is the user's guide.

- ``GET /Users`` (``filter``, ``startIndex``, ``count``, ``attributes``,
  ``excludedAttributes``), ``POST /Users``;
- ``GET``, ``PUT``, ``PATCH``, ``DELETE /Users/{id}`` (``If-Match`` honoured;
  answers carry ``ETag``);
- ``GET /ServiceProviderConfig``, ``/ResourceTypes[/{id}]``, ``/Schemas[/{id}]``.

Every answer is ``application/scim+json``; every error the RFC's error body
(:mod:`fieldpush.http.scim.errors`), including 404 for any other path under
``/scim/v2`` and 405 for another method. Checks in order: SCIM enabled (404),
the bearer secret (401, :mod:`fieldpush.http.scim.auth`), the body (the
toolkit's reader and its limits: 413 over ``max_publish_bytes``, 400
``invalidSyntax`` for what is not a JSON object or is nested too deeply), then
the request itself (scim2-models validates it in the context of its operation).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    ListResponse,
    PatchOp,
    ResponseParameters,
    SCIMException,
    SearchRequest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fieldpush.backend.directory import DirectoryEntry
from fieldpush.errors import BackendUnavailable
from fieldpush.http.scim.auth import authorize
from fieldpush.http.scim.discovery import MAX_RESULTS, config, listing
from fieldpush.http.scim.discovery import resource_types as resource_type_documents
from fieldpush.http.scim.discovery import schemas as schema_documents
from fieldpush.http.scim.errors import ScimError, scim_response
from fieldpush.http.scim.provisioning import Provisioning
from fieldpush.http.scim.resources import UserResource, etag, with_meta
from fieldpush.http.toolkit import HTTPError, decode_body, node_of, read_body
from fieldpush.node import Node

__all__ = ["BASE", "scim_routes"]

log = logging.getLogger("fieldpush.api")

#: Where the SCIM service is mounted.
BASE = "/scim/v2"
#: Media types a request body may have (RFC 7644 §3.1; plain JSON for clients that send it).
_BODY_TYPES = frozenset({"application/scim+json", "application/json", ""})
_ETAG = re.compile(r'\s*(?:W/)?"([0-9]{1,18})"\s*')
_SEARCH_PARAMETERS = ("filter", "startIndex", "count", "attributes", "excludedAttributes")

Handler = Callable[[Request, Node], Awaitable[Response]]


def endpoint(**handlers: Handler) -> Callable[[Request], Awaitable[Response]]:
    """One path's ASGI endpoint: SCIM enabled and the caller authorized, then
    the handler of the request's method (405 with ``Allow`` for another), every error
    answered as a SCIM error (503 for a backend outage, 500 with the traceback
    in the log for anything unexpected)."""
    allowed = ", ".join(handlers)

    async def run(request: Request) -> Response:
        node = node_of(request)
        where = f"{request.method} {request.url.path}"
        try:
            authorize(node.settings.scim_token, request.headers.getlist("authorization"), where)
            handler = handlers.get(request.method)
            if handler is None:
                refusal = ScimError(
                    405, None, f"{request.method} is not allowed here; use {allowed}"
                )
                response = refusal.response()
                response.headers["Allow"] = allowed
                return response
            return await handler(request, node)
        except ScimError as exc:
            return exc.response()
        except (SCIMException, ValidationError, HTTPError) as exc:
            return ScimError.of(exc).response()
        except BackendUnavailable:
            return ScimError(503, None, "backend unavailable; retry").response()
        except Exception:
            log.exception("%s failed", where)
            return ScimError(500, None, "internal error; see the logs").response()

    return run


def provisioning(node: Node) -> Provisioning:
    return Provisioning(node.backend.directory, node.accounts)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def location(request: Request, entry: DirectoryEntry) -> str:
    return f"{base_url(request)}/Users/{entry.id}"


async def body_of(request: Request, node: Node) -> dict[str, Any]:
    """The request's JSON object body (the toolkit's reader and limits)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in _BODY_TYPES:
        raise ScimError(415, None, "the body must be application/scim+json or application/json")
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    return decode_body(await read_body(request.receive, size, node.settings.max_publish_bytes))


def expected_version(request: Request) -> int | None:
    """The version ``If-Match`` names (None: no header, or ``*``); 412 for one
    that names no version of ours."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    found = _ETAG.fullmatch(value)
    if found is None:
        raise ScimError(412, None, "If-Match names no version of this User")
    return int(found.group(1))


def parameters(request: Request) -> ResponseParameters[UserResource]:
    """``attributes`` and ``excludedAttributes`` of the query."""
    query = request.query_params
    return ResponseParameters[UserResource].model_validate(
        {k: query[k] for k in ("attributes", "excludedAttributes") if k in query}
    )


def user_response(
    request: Request, entry: DirectoryEntry, context: Context, status: int = 200
) -> Response:
    resource = with_meta(entry, location(request, entry))
    headers = {"ETag": etag(entry.version)}
    if status == 201:
        headers["Location"] = location(request, entry)
    body = resource.model_dump(scim_ctx=context, response_parameters=parameters(request))
    return scim_response(body, status, headers)


# ------------------------------------------------------------------ Users


async def list_users(request: Request, node: Node) -> Response:
    query = request.query_params
    search = SearchRequest[UserResource].model_validate(
        {k: query[k] for k in _SEARCH_PARAMETERS if k in query}, scim_ctx=Context.SEARCH_REQUEST
    )
    start = max(search.start_index or 1, 1)
    count = MAX_RESULTS if search.count is None else search.count
    count = min(max(count, 0), MAX_RESULTS)
    total, entries = await provisioning(node).search(search.filter, start - 1, count)
    answer = ListResponse[UserResource](
        total_results=total,
        start_index=start,
        items_per_page=len(entries),
        resources=[with_meta(entry, location(request, entry)) for entry in entries],
    )
    body = answer.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search)
    return scim_response(body)


async def create_user(request: Request, node: Node) -> Response:
    resource = UserResource.model_validate(
        await body_of(request, node), scim_ctx=Context.RESOURCE_CREATION_REQUEST
    )
    entry = await provisioning(node).create(resource)
    return user_response(request, entry, Context.RESOURCE_CREATION_RESPONSE, 201)


async def get_user(request: Request, node: Node) -> Response:
    entry = await provisioning(node).get(request.path_params["id"])
    return user_response(request, entry, Context.RESOURCE_QUERY_RESPONSE)


async def replace_user(request: Request, node: Node) -> Response:
    expected = expected_version(request)
    resource = UserResource.model_validate(
        await body_of(request, node), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST
    )
    entry = await provisioning(node).replace(request.path_params["id"], resource, expected)
    return user_response(request, entry, Context.RESOURCE_REPLACEMENT_RESPONSE)


async def patch_user(request: Request, node: Node) -> Response:
    expected = expected_version(request)
    patch = PatchOp[UserResource].model_validate(
        await body_of(request, node), scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    entry = await provisioning(node).patch(request.path_params["id"], patch.patch, expected)
    return user_response(request, entry, Context.RESOURCE_PATCH_RESPONSE)


async def delete_user(request: Request, node: Node) -> Response:
    expected = expected_version(request)
    await provisioning(node).delete(request.path_params["id"], expected)
    return scim_response(None, 204)


# ------------------------------------------------------------------ discovery


async def service_provider_config(request: Request, node: Node) -> Response:
    return scim_response(config(base_url(request)))


async def resource_types(request: Request, node: Node) -> Response:
    return scim_response(listing(resource_type_documents(base_url(request))))


async def schemas(request: Request, node: Node) -> Response:
    return scim_response(listing(schema_documents(base_url(request))))


def one_of(documents: Callable[[str], list[dict[str, Any]]], what: str) -> Handler:
    """``GET <collection>/{id}``: the document with that id, or 404."""

    async def get_one(request: Request, node: Node) -> Response:
        wanted = request.path_params["id"]
        for document in documents(base_url(request)):
            if document["id"] == wanted:
                return scim_response(document)
        raise ScimError(404, None, f"no {what} {wanted!r}")

    return get_one


async def no_such_path(request: Request, node: Node) -> Response:
    raise ScimError(404, None, f"no SCIM endpoint {request.url.path}")


_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_no_such_path = {method: no_such_path for method in _ANY}

scim_routes = [
    Route(f"{BASE}/Users", endpoint(GET=list_users, POST=create_user), methods=_ANY),
    Route(
        f"{BASE}/Users/{{id}}",
        endpoint(GET=get_user, PUT=replace_user, PATCH=patch_user, DELETE=delete_user),
        methods=_ANY,
    ),
    Route(f"{BASE}/ServiceProviderConfig", endpoint(GET=service_provider_config), methods=_ANY),
    Route(f"{BASE}/ResourceTypes", endpoint(GET=resource_types), methods=_ANY),
    Route(
        f"{BASE}/ResourceTypes/{{id}}",
        endpoint(GET=one_of(resource_type_documents, "ResourceType")),
        methods=_ANY,
    ),
    Route(f"{BASE}/Schemas", endpoint(GET=schemas), methods=_ANY),
    Route(f"{BASE}/Schemas/{{id}}", endpoint(GET=one_of(schema_documents, "Schema")), methods=_ANY),
    Route(BASE, endpoint(**_no_such_path), methods=_ANY),
    Route(f"{BASE}/{{rest:path}}", endpoint(**_no_such_path), methods=_ANY),
]
"""The SCIM routes, for :mod:`fieldpush.http.routes`."""
