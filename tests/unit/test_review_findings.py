"""Access review findings (lifecycle.review): one test per kind on seeded data, ids, routing, scale."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lifecycle.actions import ActionKind
from lifecycle.policy import Policy
from lifecycle.review import (
    Finding,
    FindingKind,
    count_by_kind,
    find,
    finding_id,
    remediation,
    reviewer_for,
    route_reviewers,
)
from models.domain import Account, Employee, EmployeeStatus

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

POLICY = Policy.model_validate(
    {
        "birthright": [
            {"groups": ["all-staff"]},
            {"match": {"department": "Engineering"}, "groups": ["engineering", "prod-admin"]},
            {"match": {"department": "Finance"}, "groups": ["finance", "payments-create"]},
        ],
        "privileged_groups": [
            {"name": "prod-admin", "recertify_days": 90},
            {"name": "payments-approve", "recertify_days": 30},
        ],
        "leaver": {"termination_time": "18:00"},
        "review": {
            "dormant_days": 90,
            "sod_conflicts": [["payments-approve", "payments-create"]],
            "fallback_reviewer": "it-security",
        },
    }
)


def emp(
    eid: str,
    *,
    dept: str = "Engineering",
    status: EmployeeStatus = EmployeeStatus.ACTIVE,
    manager: str | None = "M1",
    termination: date | None = None,
) -> Employee:
    return Employee(
        employee_id=eid,
        first_name="Ada",
        last_name="Lovelace",
        department=dept,
        status=status,
        manager_id=manager,
        hire_date=date(2020, 1, 1),
        termination_date=termination,
    )


def acct(
    eid: str,
    *groups: str,
    active: bool = True,
    last_sign_in: datetime | None = None,
    account_id: str | None = None,
) -> Account:
    return Account(
        id=account_id or f"acc-{eid}",
        user_name=f"user.{eid.lower()}",
        employee_id=eid,
        active=active,
        last_sign_in=last_sign_in,
        groups=frozenset(groups),
    )


def kinds(findings: list[Finding]) -> list[tuple[str, str | None]]:
    return sorted((f.kind.value, f.group) for f in findings)


def run(
    employees: list[Employee], accounts: list[Account], approvals: dict | None = None, policy: Policy = POLICY
) -> list[Finding]:
    return find({e.employee_id: e for e in employees}, accounts, approvals or {}, NOW, policy)


def test_clean_employee_has_no_findings() -> None:
    """An active engineer holding exactly their birthright and an approved privileged group is clean."""
    findings = run(
        [emp("E1")],
        [acct("E1", "all-staff", "engineering", "prod-admin", "vpn-manual")],
        {"E1": {"prod-admin": NOW - timedelta(days=10)}},
    )
    assert findings == []


def test_orphan_account() -> None:
    """An enabled account whose employee id is not in the roster (or empty) is an orphan, nothing else."""
    findings = run(
        [emp("E1")],
        [
            acct("E9", "all-staff", "prod-admin"),
            Account(id="svc-1", user_name="svc", employee_id="", active=True),
        ],
    )
    assert kinds(findings) == [("orphan", None), ("orphan", None)]
    assert {f.employee_id for f in findings} == {"E9", None}


def test_disabled_accounts_are_not_reviewed() -> None:
    """A disabled account grants nothing: no orphan, no outside-policy finding."""
    assert run([emp("E1")], [acct("E9", active=False), acct("E1", "finance", active=False)]) == []


def test_terminated_but_active() -> None:
    """A terminated employee whose termination time has passed, still enabled, is one finding."""
    findings = run(
        [emp("E1", status=EmployeeStatus.TERMINATED, termination=date(2026, 2, 1))],
        [acct("E1", "all-staff", "finance")],
    )
    assert kinds(findings) == [("terminated_active", None)]


def test_termination_later_today_is_not_a_finding() -> None:
    """At 12:00 UTC on the termination day (disable due at 18:00) the leaver flow still owns it."""
    findings = run(
        [emp("E1", status=EmployeeStatus.TERMINATED, termination=NOW.date())], [acct("E1", "all-staff")]
    )
    assert findings == []


def test_active_status_past_termination_date_is_terminated_active() -> None:
    """Dates win over a lagging HR status: an 'active' employee past their termination time is a leaver."""
    findings = run([emp("E1", termination=date(2026, 2, 27))], [acct("E1", "all-staff")])
    assert kinds(findings) == [("terminated_active", None)]


def test_dormant_and_unknown_sign_in() -> None:
    """No sign-in for more than dormant_days is dormant; a provider that records none (None) is not."""
    findings = run(
        [emp("E1"), emp("E2"), emp("E3")],
        [
            acct("E1", "all-staff", last_sign_in=NOW - timedelta(days=91)),
            acct("E2", "all-staff", last_sign_in=NOW - timedelta(days=89)),
            acct("E3", "all-staff", last_sign_in=None),
        ],
    )
    assert [(f.kind, f.employee_id) for f in findings] == [(FindingKind.DORMANT, "E1")]
    assert findings[0].since == NOW - timedelta(days=91)


def test_outside_policy_managed_group_and_unapproved_privileged() -> None:
    """A managed group without a birthright rule, and a privileged group without approval, are outside policy;
    unmanaged groups (granted by hand) are not judged."""
    findings = run(
        [emp("E1")], [acct("E1", "all-staff", "engineering", "finance", "prod-admin", "wiki-editors")]
    )
    assert kinds(findings) == [("outside_policy", "finance"), ("outside_policy", "prod-admin")]


def test_sod_conflict_revokes_the_unentitled_group() -> None:
    """Holding both groups of a conflicting pair is a finding; a revoke removes the one not entitled to."""
    findings = run(
        [emp("F1", dept="Finance")],
        [acct("F1", "all-staff", "finance", "payments-create", "payments-approve")],
        {"F1": {"payments-approve": NOW - timedelta(days=1)}},
    )
    assert kinds(findings) == [("sod_conflict", "payments-approve+payments-create")]
    assert findings[0].revoke_group == "payments-create"  # approve is approved, create is birthright: second


def test_sod_conflict_prefers_removing_unentitled() -> None:
    """An engineer holding both (neither entitled) gets outside-policy findings and an SoD finding."""
    findings = run([emp("E1")], [acct("E1", "all-staff", "payments-create", "payments-approve")])
    assert ("sod_conflict", "payments-approve+payments-create") in kinds(findings)
    sod = next(f for f in findings if f.kind is FindingKind.SOD_CONFLICT)
    assert sod.revoke_group == "payments-create"


def test_recertification_due() -> None:
    """A privileged group approved longer ago than its recertify_days needs re-certification."""
    findings = run(
        [emp("E1"), emp("E2")],
        [
            acct("E1", "all-staff", "engineering", "prod-admin"),
            acct("E2", "all-staff", "engineering", "prod-admin"),
        ],
        {"E1": {"prod-admin": NOW - timedelta(days=91)}, "E2": {"prod-admin": NOW - timedelta(days=89)}},
    )
    assert [(f.kind, f.employee_id, f.group) for f in findings] == [
        (FindingKind.RECERTIFICATION, "E1", "prod-admin")
    ]


def test_finding_ids_are_stable_and_distinct() -> None:
    """The same situation yields the same ids across runs; kind, account and group each change the id."""
    employees, accounts = [emp("E1")], [acct("E1", "all-staff", "finance", "prod-admin")]
    first, second = run(employees, accounts), run(employees, accounts)
    assert [f.id for f in first] == [f.id for f in second]
    assert len({f.id for f in first}) == 2
    assert finding_id(FindingKind.OUTSIDE_POLICY, "a", "g") == finding_id(
        FindingKind.OUTSIDE_POLICY, "a", "g"
    )
    assert (
        len(
            {
                finding_id(FindingKind.OUTSIDE_POLICY, "a", "g"),
                finding_id(FindingKind.DORMANT, "a", "g"),
                finding_id(FindingKind.OUTSIDE_POLICY, "b", "g"),
                finding_id(FindingKind.OUTSIDE_POLICY, "a", "h"),
            }
        )
        == 4
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (FindingKind.ORPHAN, ActionKind.DISABLE_ACCOUNT),
        (FindingKind.TERMINATED_ACTIVE, ActionKind.DISABLE_ACCOUNT),
        (FindingKind.DORMANT, ActionKind.DISABLE_ACCOUNT),
        (FindingKind.OUTSIDE_POLICY, ActionKind.REMOVE_MEMBERSHIP),
        (FindingKind.SOD_CONFLICT, ActionKind.REMOVE_MEMBERSHIP),
        (FindingKind.RECERTIFICATION, ActionKind.REMOVE_MEMBERSHIP),
    ],
    ids=lambda v: v.value,
)
def test_remediation_kind(kind: FindingKind, expected: ActionKind) -> None:
    """Account findings disable the account; group findings remove the revoke group."""
    finding = Finding(
        id="x",
        kind=kind,
        account_id="a1",
        user_name="ada",
        employee_id=None,
        group="g1+g2" if kind is FindingKind.SOD_CONFLICT else "g1",
        revoke_group="g2",
        detail="d",
    )
    action = remediation(finding)
    assert action.kind is expected
    assert action.subject == ("ada" if expected is ActionKind.DISABLE_ACCOUNT else "g2")
    assert action.employee_id == "account:a1"


def test_reviewer_routing() -> None:
    """The manager's user name reviews; fallback for orphans, departed managers, managers without account."""
    employees = {
        e.employee_id: e
        for e in [
            emp("M1", manager=None),
            emp("E1"),
            emp("E2", manager="M2"),
            emp("M2", manager=None, status=EmployeeStatus.TERMINATED),
            emp("E3", manager="M3"),
            emp("M3", manager=None),
            emp("E4", manager=None),
        ]
    }
    accounts = [acct("M1"), acct("M2"), acct("M3", active=False)]
    names = {a.employee_id: a.user_name for a in accounts if a.active}

    def who(eid: str | None) -> str:
        return reviewer_for(
            Finding(
                id="x", kind=FindingKind.DORMANT, account_id="a", user_name="u", employee_id=eid, detail="d"
            ),
            employees,
            names,
            POLICY,
        )

    assert who("E1") == "user.m1"
    assert [who("E2"), who("E3"), who("E4"), who(None), who("X")] == ["it-security"] * 5
    routed = route_reviewers(
        [
            Finding(
                id="f1", kind=FindingKind.DORMANT, account_id="a", user_name="u", employee_id="E1", detail="d"
            )
        ],
        employees,
        accounts,
        POLICY,
    )
    assert routed == {"f1": "user.m1"}


def test_scale_10k_accounts() -> None:
    """10,000 accounts with 40,000 memberships: every seeded problem is found (timings are figures of
    bench/review_bench.py, never asserted here)."""
    employees = {
        f"E{i}": emp(f"E{i}", dept=("Engineering", "Finance", "Sales")[i % 3]) for i in range(10_000)
    }
    groups = ("all-staff", "engineering", "finance", "prod-admin")
    accounts = [acct(f"E{i}", *groups) for i in range(10_000)]
    findings = find(employees, accounts, {}, NOW, POLICY)
    counts = count_by_kind(findings)
    # engineers: finance outside; finance: engineering outside; sales: both; everyone: prod-admin unapproved
    assert counts["outside_policy"] == 3_334 + 3_333 + 2 * 3_333 + 10_000
