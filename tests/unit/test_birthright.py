"""Birthright rules and entitlements (lifecycle.birthright)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.birthright import birthright_groups, entitlements, matching_rules, rule_matches
from lifecycle.policy import BirthrightRule, Policy, PrivilegedGroup, load_policy
from models.domain import Employee, EmployeeStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


def staff(**fields: object) -> Employee:
    base: dict[str, object] = {
        "employee_id": "E1",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "status": EmployeeStatus.ACTIVE,
    }
    return Employee.model_validate(base | fields)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(EXAMPLE)


def test_everyone_rule_matches_anyone() -> None:
    """An empty match applies to every employee, even one with no attributes."""
    assert rule_matches(BirthrightRule(groups=["all-staff"]), staff())


@pytest.mark.parametrize(
    ("match", "fields", "expected"),
    [
        ({"department": "Engineering"}, {"department": "engineering"}, True),
        ({"department": "Engineering"}, {"department": " ENGINEERING "}, True),
        ({"department": "Engineering"}, {"department": "Sales"}, False),
        ({"department": "Engineering"}, {}, False),
        ({"department": ["Sales", "Finance"]}, {"department": "finance"}, True),
        ({"department": ["Sales", "Finance"]}, {"department": "Legal"}, False),
        ({"department": "Sales", "location": "Berlin"}, {"department": "Sales", "location": "Berlin"}, True),
        ({"department": "Sales", "location": "Berlin"}, {"department": "Sales", "location": "London"}, False),
    ],
    ids=[
        "exact-case-insensitive",
        "trimmed",
        "other-value",
        "missing-attribute",
        "list-any-of",
        "list-none",
        "all-keys-match",
        "one-key-fails",
    ],
)
def test_rule_matching(match: dict[str, object], fields: dict[str, object], expected: bool) -> None:
    """Keys all must match; list values mean any of; compare ignores case and surrounding space."""
    rule = BirthrightRule.model_validate({"match": match, "groups": ["g"]})
    assert rule_matches(rule, staff(**fields)) is expected


def test_union_of_matching_rules(policy: Policy) -> None:
    """An engineer contractor in Berlin gets the union of every matching rule's groups."""
    employee = staff(department="Engineering", employment_type="contractor", location="Berlin")
    assert birthright_groups(employee, policy) == {
        "all-staff",
        "engineering",
        "github-users",
        "contractors",
        "office-berlin",
    }
    assert [i for i, _ in matching_rules(employee, policy)] == [1, 2, 5, 6]


def test_unknown_department_gets_only_everyone_rules(policy: Policy) -> None:
    """A department no rule knows yields only the everyone-rules' groups."""
    assert birthright_groups(staff(department="Astrology"), policy) == {"all-staff"}


def test_privileged_group_is_never_birthright() -> None:
    """A privileged group named by a rule needs approval; with one it becomes a grant."""
    policy = Policy(
        birthright=[BirthrightRule(match={"department": "Ops"}, groups=["ops", "prod-admin"])],
        privileged_groups=[PrivilegedGroup(name="prod-admin")],
    )
    employee = staff(department="Ops")
    assert birthright_groups(employee, policy) == {"ops"}
    pending = entitlements(employee, policy)
    assert pending.grants == {"ops"}
    assert pending.needs_approval == {"prod-admin"}
    assert pending.protected == {"ops", "prod-admin"}
    approved = entitlements(employee, policy, frozenset({"prod-admin"}))
    assert approved.grants == {"ops", "prod-admin"}
    assert approved.needs_approval == frozenset()


def test_approval_grants_privileged_group_without_rule() -> None:
    """A recorded grant entitles the group: a privileged group's approval, or a membership kept in a review."""
    policy = Policy(privileged_groups=[PrivilegedGroup(name="payments-approve")])
    ents = entitlements(staff(), policy, frozenset({"payments-approve", "kept-in-review"}))
    assert ents.grants == {"payments-approve", "kept-in-review"}
    assert ents.reasons["kept-in-review"] == "kept in an access review"
    assert ents.reasons["payments-approve"] == "privileged group with a recorded approval"


def test_reasons_name_the_rule(policy: Policy) -> None:
    """Each granted group's reason names the first rule that grants it."""
    ents = entitlements(staff(department="Sales"), policy)
    assert ents.reasons == {
        "all-staff": "birthright rule 1 (everyone)",
        "sales": "birthright rule 3 (department)",
        "crm-users": "birthright rule 3 (department)",
    }
