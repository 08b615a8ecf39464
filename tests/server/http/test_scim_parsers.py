"""The SCIM request parsers under hypothesis (pure: no socket): whatever JSON an
identity provider sends as a User, a PatchOp or a filter, the steps of the
routes (scim2-models' validation in the operation's context, the PATCH
applied, the account mapping, the stored form, a filter matched) raise only
the errors the routes answer as SCIM errors (4xx), never anything that would
be a 500."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scim2_models import Context, PatchOp, SCIMException, SearchRequest

from fieldpush.http.scim.errors import ScimError
from fieldpush.http.scim.resources import UserResource, account_of, encode
from tests.server.http.scim_support import EXTENSION, PATCH_SCHEMA, USER_SCHEMA

ANSWERED = (ScimError, SCIMException, ValidationError)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["True", "False", "", " ", "a b", "x\x00", "sales", "supervisor", "north"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
attributes = st.sampled_from(
    [
        "userName",
        "active",
        "roles",
        "displayName",
        "name",
        "emails",
        "externalId",
        "id",
        "meta",
        "password",
        "groups",
        "schemas",
        EXTENSION,
        "nickName",
        "Operations",
    ]
)
users = st.fixed_dictionaries(
    {"schemas": st.sampled_from([[USER_SCHEMA], [USER_SCHEMA, EXTENSION], [], ["urn:x"]])},
    optional={
        "userName": json_values,
        "active": json_values,
        "roles": st.lists(
            st.dictionaries(st.sampled_from(["value", "primary", "type"]), json_values),
            max_size=3,
        )
        | json_values,
        EXTENSION: st.fixed_dictionaries({}, optional={"teams": json_values}) | json_values,
    },
).flatmap(lambda d: st.dictionaries(attributes, json_values, max_size=3).map(lambda x: {**x, **d}))
paths = st.sampled_from(
    [
        "active",
        "userName",
        "roles",
        "roles[primary eq true].value",
        f"{EXTENSION}:teams",
        "name.givenName",
        'emails[type eq "work"].value',
        "meta",
        "id",
        "nope",
        "",
        "[",
        None,
    ]
)
operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "Replace", "remove", "REMOVE", "frob", ""]) | json_values},
    optional={"path": paths | json_values, "value": json_values | users},
)
patches = st.fixed_dictionaries(
    {
        "schemas": st.sampled_from([[PATCH_SCHEMA], [], ["urn:x"]]),
        "Operations": st.lists(operations, max_size=3) | json_values,
    }
)
filters = st.text(
    alphabet=st.sampled_from(list('userNamectiv ()[]"eqnsgtlprandot.:01\\')), max_size=60
) | st.sampled_from(['userName eq "a"', "active eq true", 'roles[value eq "x"]', "emails pr"])


def alice() -> Any:
    return UserResource.model_validate(
        {"schemas": [USER_SCHEMA], "userName": "alice", "active": True}
    )


@settings(max_examples=400, deadline=None)
@given(
    users,
    st.sampled_from([Context.RESOURCE_CREATION_REQUEST, Context.RESOURCE_REPLACEMENT_REQUEST]),
)
def test_user_bodies_raise_only_answered_errors(body: dict[str, Any], context: Context) -> None:
    try:
        resource = UserResource.model_validate(body, scim_ctx=context)
        account_of(resource)
        encode(resource)
    except ANSWERED:
        pass


@settings(max_examples=400, deadline=None)
@given(patches)
def test_patches_raise_only_answered_errors(body: dict[str, Any]) -> None:
    resource = alice()
    try:
        patch = PatchOp[UserResource].model_validate(body, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
        patch.patch(resource)
        account_of(resource)
        encode(resource)
    except ANSWERED:
        pass


@settings(max_examples=400, deadline=None)
@given(filters)
def test_filters_raise_only_answered_errors(text: str) -> None:
    try:
        search = SearchRequest[UserResource].model_validate(
            {"filter": text}, scim_ctx=Context.SEARCH_REQUEST
        )
        if search.filter is not None:
            search.filter.match(alice())
    except ANSWERED:
        pass
