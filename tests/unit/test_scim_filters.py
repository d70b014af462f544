"""Pure SCIM helpers: filter quoting (RFC 7644 §3.4.2.2), PATCH operations, resource mapping."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.idp.scim import patch_operations, scim_filter_eq
from connectors.idp.scim_resources import account_from_user, parse_user, user_payload, user_resource
from models.domain import AccountAttributes

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ada@example.com", 'userName eq "ada@example.com"'),
        ('o"brien\\x@example.com', 'userName eq "o\\"brien\\\\x@example.com"'),
        ('x" or userName pr or userName eq "y', 'userName eq "x\\" or userName pr or userName eq \\"y"'),
        ("Zoë", 'userName eq "Zoë"'),
        ("tab\there", 'userName eq "tab\\there"'),
    ],
    ids=["plain", "quote-and-backslash", "injection", "unicode", "control-char"],
)
def test_filter_eq_escapes_quote_and_backslash(value: str, expected: str) -> None:
    """Values are written as JSON strings: quotes and backslashes escaped, nothing else touched."""
    assert scim_filter_eq("userName", value) == expected


@given(st.text(max_size=40))
def test_filter_value_round_trips_as_one_json_string(value: str) -> None:
    """Whatever the value, the compValue parses back as exactly one JSON string equal to it."""
    compvalue = scim_filter_eq("externalId", value).removeprefix("externalId eq ")
    assert json.loads(compvalue) == value


@pytest.mark.parametrize(
    "attr",
    ['userName" or "1', "user name", "", "emails[type eq work]"],
    ids=["quote", "space", "empty", "filter"],
)
def test_filter_refuses_attribute_paths_that_are_not_paths(attr: str) -> None:
    """The attribute side is never free text."""
    with pytest.raises(ValueError, match="not a SCIM attribute path"):
        scim_filter_eq(attr, "x")


def test_filter_accepts_extension_paths() -> None:
    """A fully qualified extension attribute is a valid path."""
    assert scim_filter_eq(f"{ENTERPRISE}:employeeNumber", "7") == f'{ENTERPRISE}:employeeNumber eq "7"'


def test_patch_operations_replace_and_remove() -> None:
    """Changed values become replace; None becomes remove; employee_id writes both places."""
    ops = patch_operations({"title": "Lead", "email": None, "employee_id": "E-2", "department": "R&D"})
    assert ops == [
        {"op": "replace", "path": "title", "value": "Lead"},
        {"op": "remove", "path": "emails"},
        {"op": "replace", "path": "externalId", "value": "E-2"},
        {"op": "replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "E-2"},
        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "R&D"},
    ]


def test_patch_manager_needs_the_account_id() -> None:
    """manager_id is written as manager.value = account id, skipped when unknown, removed when None."""
    assert patch_operations({"manager_id": "E-9"}) == []
    assert patch_operations({"manager_id": "E-9"}, manager_account_id="acc-9") == [
        {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "acc-9"}}
    ]
    assert patch_operations({"manager_id": None}) == [{"op": "remove", "path": f"{ENTERPRISE}:manager"}]


def test_patch_refuses_unknown_attributes() -> None:
    """A typo in a change set is an error, not a silent no-op."""
    with pytest.raises(ValueError, match="unknown account attribute"):
        patch_operations({"tittle": "x"})


def test_resource_round_trip() -> None:
    """AccountAttributes → SCIM payload → parsed User → Account gives the same attributes back."""
    wanted = AccountAttributes(
        user_name="ada@example.com",
        employee_id="E-1",
        given_name="Ada",
        family_name="Lovelace",
        display_name="Ada Lovelace",
        email="ada@example.com",
        title="Engineer",
        department="R&D",
        active=False,
    )
    payload = user_payload(user_resource(wanted, manager_account_id="acc-9"))
    assert payload["externalId"] == "E-1" and payload[ENTERPRISE]["employeeNumber"] == "E-1"
    assert payload[ENTERPRISE]["manager"] == {"value": "acc-9"}
    user, extra = parse_user(payload | {"id": "acc-1"})
    account = account_from_user(user, manager_id="E-9", extra=extra)
    assert account.id == "acc-1" and account.active is False and account.manager_id == "E-9"
    assert wanted.model_copy(update={"manager_id": "E-9"}).differences(account) == {}
