"""The HTTP toolkit (fieldpush.http.toolkit): the one body reader, the one auth
helper and the one error type, alone and through both body paths of a real
node (the plain ASGI publish endpoint and the Starlette routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fieldpush.errors import AuthError, BackendUnavailable, FieldpushError
from fieldpush.http.toolkit import (
    HTTPError,
    authenticate,
    check_channel,
    decode_body,
    device_of,
    exception_handlers,
    read_body,
    reject_unknown,
    require_role,
)
from fieldpush.identity.auth import Identity
from fieldpush_client.protocol import ErrorCode
from tests.support.node import RunningNode, node_settings, running_node


def receiver(*messages: dict[str, Any]) -> Any:
    """An ASGI ``receive`` that hands out ``messages``, then fails the test."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        assert pending, "read past the last message"
        return pending.pop(0)

    return receive


def chunks(*parts: bytes) -> list[dict[str, Any]]:
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def refused(status: int, code: ErrorCode) -> Any:
    """A context that expects an HTTPError with ``status`` and ``code``."""
    return pytest.raises(HTTPError, check=lambda e: (e.status, e.code) == (status, code))


# ------------------------------------------------------------------ errors


def test_an_http_error_is_a_fieldpush_error_with_the_api_body() -> None:
    error = HTTPError(422, ErrorCode.INVALID, "kind: too long")
    assert isinstance(error, FieldpushError)
    assert error.body == {"error": {"code": "invalid", "message": "kind: too long"}}
    assert error.headers == {}
    assert HTTPError(401, ErrorCode.UNAUTHORIZED, "no").headers == {"WWW-Authenticate": "Bearer"}
    response = error.response()
    assert (response.status_code, response.body) == (
        422,
        b'{"error":{"code":"invalid","message":"kind: too long"}}',
    )


# ------------------------------------------------------------------ body


async def test_the_body_is_read_in_chunks() -> None:
    assert await read_body(receiver(*chunks(b'{"a"', b":", b"1}")), None, 100) == b'{"a":1}'
    assert await read_body(receiver(*chunks(b"")), None, 100) == b""


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    with refused(413, ErrorCode.TOO_LARGE) as caught:
        await read_body(receiver(), 101, 100)
    assert caught.value.message == "body is 101 bytes; the limit is 100"


async def test_a_body_that_grows_over_the_limit_is_413() -> None:
    with refused(413, ErrorCode.TOO_LARGE) as caught:
        await read_body(receiver(*chunks(b"x" * 60, b"x" * 60)), None, 100)
    assert caught.value.message == "body is over the limit of 100 bytes"
    with refused(413, ErrorCode.TOO_LARGE):  # the header understated it
        await read_body(receiver(*chunks(b"x" * 101)), 10, 100)


async def test_a_client_gone_before_the_end_is_400() -> None:
    messages = [*chunks(b"{", b"}")[:1], {"type": "http.disconnect"}]
    with refused(400, ErrorCode.BAD_REQUEST):
        await read_body(receiver(*messages), None, 100)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{oops",
        b"\xff\xfe",
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"x": -Infinity}',
        b'{"x": 1e999}',
        b'{"x": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_what_is_not_json_is_400(body: bytes) -> None:
    with refused(400, ErrorCode.BAD_REQUEST) as caught:
        decode_body(body)
    assert caught.value.message.startswith("body is not valid JSON: ")


@pytest.mark.parametrize("body", [b"[1]", b"1", b'"x"', b"null", b"true", b"[" * 10 + b"]" * 10])
def test_json_that_is_not_an_object_is_422(body: bytes) -> None:
    with refused(422, ErrorCode.INVALID) as caught:
        decode_body(body)
    assert caught.value.message == "body must be a JSON object"


def test_an_object_is_the_body() -> None:
    assert decode_body(b'{"a": [1, 2.5, "x", null, {"b": true}]}') == {
        "a": [1, 2.5, "x", None, {"b": True}]
    }


def test_field_checks_name_the_field() -> None:
    assert device_of({}, "poll", 10) == "poll"
    assert device_of({"device": "d1"}, None, 10) == "d1"
    for body, default in (({}, None), ({"device": ""}, "x"), ({"device": 5}, "x")):
        with refused(422, ErrorCode.INVALID) as caught:
            device_of(body, default, 10)
        assert caught.value.message == "device: must be a string of 1 to 10 characters"
    reject_unknown({"a": 1}, frozenset({"a", "b"}))
    with refused(422, ErrorCode.INVALID) as caught:
        reject_unknown({"a": 1, "z": 2, "y": 3}, frozenset({"a", "b"}))
    assert caught.value.message == "y: unknown field (known: a, b)"
    check_channel("subs", "team:north")
    for channel in ("nope", 5):
        with refused(422, ErrorCode.INVALID) as caught:
            check_channel("subs", channel)
        assert caught.value.message.startswith("subs: ")


def test_a_role_outside_the_allowed_ones_is_403() -> None:
    identity = Identity(user="u", role="sales", teams=frozenset(), expires_at=0.0)
    require_role(identity, frozenset({"sales", "admin"}), "read presence")
    with refused(403, ErrorCode.FORBIDDEN) as caught:
        require_role(identity, frozenset({"admin"}), "read presence")
    assert caught.value.message == "role 'sales' may not read presence"


async def test_route_errors_and_backend_outages_are_the_api_error_body() -> None:
    refused_401 = HTTPError(401, ErrorCode.UNAUTHORIZED, "no token")
    response = await exception_handlers[HTTPError](None, refused_401)
    assert (response.status_code, response.body) == (
        401,
        b'{"error":{"code":"unauthorized","message":"no token"}}',
    )
    assert response.headers["www-authenticate"] == "Bearer"
    outage = BackendUnavailable("redis down")
    response = await exception_handlers[BackendUnavailable](None, outage)
    assert (response.status_code, response.body) == (
        503,
        b'{"error":{"code":"unavailable","message":"backend unavailable; retry"}}',
    )


# ------------------------------------------------------------------ auth


class Verifier:
    """Accepts the token ``good``."""

    def verify(self, token: str) -> Identity:
        if token != "good":
            raise AuthError("token expired")
        return Identity(user="u", role="sales", teams=frozenset(), expires_at=0.0)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer   ", "Basic good", "good"])
def test_a_missing_bearer_token_is_401(header: str) -> None:
    with refused(401, ErrorCode.UNAUTHORIZED) as caught:
        authenticate(Verifier(), [header] if header else [], "GET /x")
    assert caught.value.message == "missing 'Authorization: Bearer <token>' header"


def test_a_token_refused_is_401_with_the_reason_and_a_good_one_is_its_identity() -> None:
    with refused(401, ErrorCode.UNAUTHORIZED) as caught:
        authenticate(Verifier(), ["Bearer bad"], "GET /x")
    assert caught.value.message == "token expired"
    assert authenticate(Verifier(), ["bearer  good "], "GET /x").user == "u"


def test_two_authorization_headers_are_401_whatever_they_hold() -> None:
    """Issue 11, defect 8: never pick one of two headers."""
    for pair in (["Bearer good", "Bearer bad"], ["Bearer bad", "Bearer good"]):
        with refused(401, ErrorCode.UNAUTHORIZED) as caught:
            authenticate(Verifier(), pair, "GET /x")
        assert caught.value.message == "more than one Authorization header"


# ------------------------------------------------- through a node, both paths


@pytest.fixture
async def node() -> AsyncIterator[RunningNode]:
    async with running_node(node_settings(max_publish_bytes=4096)) as running:
        yield running


#: One route per body path: the plain ASGI endpoint and a Starlette route.
PATHS = ["/v1/publish", "/v1/poll"]


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    """``body`` without a Content-Length (chunked)."""
    yield body


@pytest.mark.parametrize("path", PATHS)
async def test_deep_nesting_is_400_not_500(
    node: RunningNode, http: httpx.AsyncClient, path: str
) -> None:
    headers = {"Authorization": f"Bearer {node.token('d', 'dispatcher')}"}
    reply = await http.post(path, content=b"[" * 2000 + b"]" * 2000, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("path", PATHS)
async def test_both_paths_read_bodies_alike(
    node: RunningNode, http: httpx.AsyncClient, path: str
) -> None:
    headers = {"Authorization": f"Bearer {node.token('d', 'dispatcher')}"}
    cases = [
        (b"{oops", 400, "bad_request"),
        (b'{"x": NaN}', 400, "bad_request"),
        (b"[1]", 422, "invalid"),
        (b"x" * 5000, 413, "too_large"),
    ]
    for body, status, code in cases:
        for content in (body, streamed(body)):
            reply = await http.post(path, content=content, headers=headers)
            assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), body[:20]


@pytest.mark.parametrize("path", PATHS)
async def test_auth_comes_before_the_body(http: httpx.AsyncClient, path: str) -> None:
    reply = await http.post(path, content=b"x" * 5000)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"


async def test_a_backend_outage_a_route_does_not_answer_is_503(
    node: RunningNode, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(user: str) -> Any:
        raise BackendUnavailable("down")

    monkeypatch.setattr(node.node.backend.presence, "of_user", down)
    headers = {"Authorization": f"Bearer {node.token('d', 'dispatcher')}"}
    reply = await http.get("/v1/presence/users/alice", headers=headers)
    assert reply.status_code == 503
    assert reply.json() == {
        "error": {"code": "unavailable", "message": "backend unavailable; retry"}
    }
