"""The plain-JSON reading of listed SCIM users, groups and list envelopes gives what the full scim2-models
validation gives; a listing in the plain shape never imports scim2-models."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.idp.scim import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    LIST_RESPONSE_SCHEMA,
    USER_SCHEMA,
    _group,
    quick_envelope,
    quick_group,
    quick_user,
)
from connectors.idp.scim_resources import account_from_user, check_list_envelope, parse_group, parse_user
from models.domain import Group

FULL: dict[str, Any] = {
    "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
    "id": "u1",
    "externalId": "E1",
    "userName": "ada@example.com",
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "displayName": "Ada Lovelace",
    "title": "Engineer",
    "active": False,
    "emails": [
        {"value": "home@example.com", "type": "home", "primary": False},
        {"value": "ada@example.com", "type": "work", "primary": True},
    ],
    "groups": [{"value": "g1", "display": "engineering"}],
    "meta": {"resourceType": "User", "version": 'W/"3"'},
    ENTERPRISE_SCHEMA: {"employeeNumber": "E1", "department": "R&D", "manager": {"value": "m1"}},
}
MINIMAL: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": "u2", "userName": "bob@example.com"}
NO_EXTERNAL_ID: dict[str, Any] = {
    "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
    "id": "u3",
    "userName": "cy@example.com",
    ENTERPRISE_SCHEMA: {"employeeNumber": "E3"},
}


@pytest.mark.parametrize(
    "payload", [FULL, MINIMAL, NO_EXTERNAL_ID], ids=["full", "minimal", "employee-number"]
)
def test_quick_reading_matches_the_validated_one(payload: dict[str, Any]) -> None:
    quick = quick_user(payload)
    assert quick is not None
    user, extra = parse_user(payload)
    expected = account_from_user(user, manager_id="M", extra=extra)
    assert {**quick.values, "id": quick.id, "manager_id": "M"} == expected.model_dump(exclude={"existing"})
    assert quick.manager == (payload.get(ENTERPRISE_SCHEMA, {}).get("manager") or {}).get("value")


@pytest.mark.parametrize(
    "payload",
    [
        {**MINIMAL, "USERNAME": "x"},  # another spelling of an attribute (names are case-insensitive)
        {**MINIMAL, "urn:example:ext:1.0:User": {"lastLogin": "2026-01-01T00:00:00Z"}},  # a vendor extension
        {**MINIMAL, "active": "yes"},
        {**MINIMAL, "emails": "ada@example.com"},
        {**MINIMAL, "id": 7},
    ],
    ids=["spelling", "extension", "active-text", "emails-text", "numeric-id"],
)
def test_anything_unusual_goes_to_full_validation(payload: dict[str, Any]) -> None:
    assert quick_user(payload) is None


GROUP: dict[str, Any] = {
    "schemas": [GROUP_SCHEMA],
    "id": "g1",
    "displayName": "engineering",
    "members": [
        {"value": "u1", "$ref": "https://idp.example/scim/v2/Users/u1", "display": "Ada", "type": "User"},
        {"value": "u2"},
        {"display": "no value"},
    ],
    "meta": {"resourceType": "Group", "version": 'W/"7"'},
}


@pytest.mark.parametrize(
    "payload",
    [GROUP, {"schemas": [GROUP_SCHEMA], "id": "g2", "displayName": "empty"}, {**GROUP, "members": None}],
    ids=["members", "no-members", "null-members"],
)
def test_quick_group_matches_the_validated_one(payload: dict[str, Any]) -> None:
    quick = quick_group(payload)
    assert quick == _group(parse_group(payload))
    assert quick is not None and Group.model_validate(quick.model_dump()) == quick  # built without validation
    assert type(quick.member_ids) is frozenset and all(type(m) is str for m in quick.member_ids)


@pytest.mark.parametrize(
    "payload",
    [
        {**GROUP, "DisplayName": "x"},  # another spelling
        {**GROUP, "urn:example:ext:1.0:Group": {"owner": "x"}},  # a vendor extension
        {**GROUP, "id": 7},
        {**GROUP, "members": "u1"},
        {
            **GROUP,
            "members": [{"value": "u1", "primary": True}],
        },  # a member attribute the model does not know
        {**GROUP, "meta": "yesterday"},
        {key: value for key, value in GROUP.items() if key != "id"},
    ],
    ids=["spelling", "extension", "numeric-id", "members-text", "member-extra", "meta-text", "no-id"],
)
def test_anything_unusual_in_a_group_goes_to_full_validation(payload: dict[str, Any]) -> None:
    assert quick_group(payload) is None


@pytest.mark.parametrize(
    ("emails", "expected"),
    [
        (
            [("h@example.com", "home", True), ("w@example.com", "work", False)],
            "h@example.com",
        ),  # primary before work
        (
            [("w1@example.com", "work", False), ("w2@example.com", "work", True)],
            "w2@example.com",
        ),  # primary work first of all
        (
            [("h@example.com", "home", False), ("o@example.com", "other", False)],
            "h@example.com",
        ),  # else the first
        (
            [(None, "work", True), ("h@example.com", "home", False)],
            "h@example.com",
        ),  # entries without a value do not count
        (
            [("w@example.com", "Work", False), ("h@example.com", None, False)],
            "w@example.com",
        ),  # type compared case-insensitively
    ],
)
def test_the_address_an_account_is_read_with(emails: list[tuple[Any, Any, Any]], expected: str) -> None:
    payload = {**MINIMAL, "emails": [{"value": v, "type": t, "primary": p} for v, t, p in emails]}
    quick = quick_user(payload)
    assert quick is not None and quick.values["email"] == expected
    user, extra = parse_user(payload)
    assert account_from_user(user, manager_id=None, extra=extra).email == expected


def test_the_enterprise_schema_is_the_one_scim2_models_names() -> None:
    from scim2_models import EnterpriseUser

    assert str(EnterpriseUser.__schema__) == ENTERPRISE_SCHEMA


@pytest.mark.parametrize(
    "envelope",
    [
        {
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": 2,
            "startIndex": 1,
            "itemsPerPage": 2,
            "Resources": [],
        },
        {"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": 0},
    ],
)
def test_a_plain_envelope_is_one_scim2_models_accepts(envelope: dict[str, Any]) -> None:
    assert quick_envelope(envelope)
    check_list_envelope(envelope, source="scim")  # raises if scim2-models refused it


@pytest.mark.parametrize(
    "envelope",
    [
        {"schemas": [LIST_RESPONSE_SCHEMA, "urn:example:paging"], "totalResults": 1},
        {"schemas": [], "totalResults": 1},
        {"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": True},
        {"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": -1},
        {"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": "3"},
        {"schemas": [LIST_RESPONSE_SCHEMA], "totalResults": 1, "nextCursor": "abc"},
    ],
    ids=["extra-schema", "no-schema", "bool-count", "negative", "text-count", "cursor"],
)
def test_anything_unusual_in_an_envelope_goes_to_full_validation(envelope: dict[str, Any]) -> None:
    assert not quick_envelope(envelope)


PLAIN_LISTING_THEN_AN_EXTENSION = """
import asyncio, json, sys
import httpx
from pydantic import SecretStr
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings

LR = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "u1", "externalId": "E1",
        "userName": "ada@example.com", "active": True}
extended = {**USER, "id": "u2", "externalId": "E2", "urn:example:ext:1.0:User": {"badge": "7"}}
pages = {"Users": [USER], "Groups": [{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
         "displayName": "all-staff", "members": [{"value": "u1"}]}]}

def answer(request):
    kind = request.url.path.rsplit("/", 1)[-1]
    found = pages[kind] if request.url.params.get("startIndex") == "1" else []
    return httpx.Response(200, json={"schemas": [LR], "totalResults": len(pages[kind]), "Resources": found})

async def main():
    idp = build_identity_provider(
        IdPSettings(kind="scim", base_url="http://127.0.0.1:9/", token=SecretStr("t")),
        transport=httpx.MockTransport(answer),
    )
    users = [a.employee_id async for page in idp.iter_users() for a in page]
    groups = [g.name for g in await idp.list_groups()]
    plain = "scim2_models" in sys.modules
    pages["Users"] = [extended]
    more = [a.employee_id async for page in idp.iter_users() for a in page]
    await idp.aclose()
    print(json.dumps([users, groups, plain, more, "scim2_models" in sys.modules]))

asyncio.run(main())
"""


def test_a_plain_listing_reads_without_scim2_models_and_an_extension_loads_it() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", PLAIN_LISTING_THEN_AN_EXTENSION],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    users, groups, plain, more, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert (users, groups, plain) == (["E1"], ["all-staff"], False)
    assert (more, loaded) == (["E2"], True)
