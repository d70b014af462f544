"""The plain-JSON reading of listed SCIM users gives the same Account as the full scim2-models validation."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.idp.scim import ENTERPRISE_SCHEMA, USER_SCHEMA, account_from_user, parse_user, quick_user

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
