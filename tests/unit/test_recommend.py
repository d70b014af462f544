"""Explained review recommendations (lifecycle/recommend.py) on a generated 2,000-person roster with 5 % planted
outlier grants: at least 90 % of the outliers are recommended ``revoke``, at most 5 % of the birthright grants
are, every recommendation carries its evidence line, and nothing but department and title decides who the
peers are."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from lifecycle.birthright import birthright_groups
from lifecycle.policy import Policy
from lifecycle.recommend import Peers, Provenance, Recommendation, recommend, recommend_finding
from lifecycle.review import Finding, FindingKind
from models.domain import Account, Employee, EmployeeStatus

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PEOPLE = 2000
OUTLIER_SHARE = 0.05
DEPARTMENTS = {
    "Engineering": ("Software Engineer", "SRE", "Engineering Manager"),
    "Sales": ("Account Executive", "Sales Engineer", "Sales Manager"),
    "Finance": ("Accountant", "Controller", "Analyst"),
    "People": ("Recruiter", "HR Partner", "People Ops"),
    "Marketing": ("Designer", "Content Lead", "Growth Analyst"),
    "Support": ("Agent", "Team Lead", "Support Engineer"),
}
POLICY = Policy.model_validate(
    {
        "birthright": [
            {"groups": ["all-staff"]},
            *({"match": {"department": d}, "groups": [d.lower()]} for d in DEPARTMENTS),
            {
                "match": {"department": "Engineering", "title": ["Software Engineer", "SRE"]},
                "groups": ["github"],
            },
            {"match": {"department": "Finance"}, "groups": ["erp"]},
        ],
        "review": {"dormant_days": 90},
    }
)


def _tool(department: str, title: str) -> str:
    return f"tool-{department.lower()}-{title.lower().replace(' ', '-')}"


def roster(
    seed: int = 17, people: int = PEOPLE
) -> tuple[list[Employee], dict[str, Account], dict[tuple[str, str], Provenance], set]:
    """Employees, their accounts (groups), the ledger provenance of each membership, and the planted outliers.

    Birthright groups as the policy says (half of them recorded in the ledger as birthright, half predating
    Tenure: by hand); a team tool per department+title held by hand by ~80 % of the team; 5 % of people
    also hold one group no-one in their department holds (another department's group or team tool)."""
    rng = random.Random(seed)
    employees, accounts, provenance = [], {}, {}
    outliers: set[tuple[str, str]] = set()
    for n in range(people):
        department = rng.choice(sorted(DEPARTMENTS))
        title = rng.choice(DEPARTMENTS[department])
        employee = Employee(
            employee_id=f"E{n:05d}",
            first_name=rng.choice(["Ada", "Bongani", "Chen", "Dagny", "Elif"]),
            last_name=f"N{n}",
            department=department,
            title=title,
            location=rng.choice(["Berlin", "Lisbon", "Tokyo"]),
            employment_type=rng.choice(["Full-Time", "Part-Time", "Contractor"]),
            status=EmployeeStatus.ACTIVE,
            hire_date=date(2024, 1, 1) + timedelta(days=rng.randrange(600)),
        )
        employees.append(employee)
        groups = set(birthright_groups(employee, POLICY))
        for group in groups:
            provenance[(employee.employee_id, group)] = "birthright" if rng.random() < 0.5 else "manual"
        if rng.random() < 0.8:
            groups.add(_tool(department, title))
            provenance[(employee.employee_id, _tool(department, title))] = (
                "approval" if rng.random() < 0.2 else "manual"
            )
        if rng.random() < OUTLIER_SHARE:
            other = rng.choice(sorted(set(DEPARTMENTS) - {department}))
            planted = rng.choice([other.lower(), _tool(other, rng.choice(DEPARTMENTS[other]))])
            groups.add(planted)
            provenance[(employee.employee_id, planted)] = "manual"
            outliers.add((employee.employee_id, planted))
        seen = NOW - timedelta(days=rng.randrange(30))
        accounts[employee.employee_id] = Account(
            id=f"u{n}",
            user_name=f"user{n}",
            employee_id=employee.employee_id,
            groups=frozenset(groups),
            last_sign_in=seen,
        )
    return employees, accounts, provenance, outliers


def recommend_all(
    employees: list[Employee], accounts: dict[str, Account], provenance: dict[tuple[str, str], Provenance]
) -> dict[tuple[str, str], Recommendation]:
    peers = Peers(employees, {eid: a.groups for eid, a in accounts.items()})
    return {
        (e.employee_id, group): recommend(
            group,
            e,
            accounts[e.employee_id],
            peers=peers,
            provenance=provenance[(e.employee_id, group)],
            policy=POLICY,
            now=NOW,
        )
        for e in employees
        for group in sorted(accounts[e.employee_id].groups)
    }


def test_planted_outliers_are_revoked_and_birthright_grants_kept_each_with_evidence() -> None:
    employees, accounts, provenance, outliers = roster()
    found = recommend_all(employees, accounts, provenance)
    assert len(outliers) >= 0.04 * PEOPLE
    flagged = [key for key in outliers if found[key].advice == "revoke"]
    assert len(flagged) >= 0.9 * len(outliers), f"{len(flagged)} of {len(outliers)} outliers flagged"
    by_id = {e.employee_id: e for e in employees}

    birthright = [k for k in found if k[1] in birthright_groups(by_id[k[0]], POLICY)]
    revoked = [k for k in birthright if found[k].advice == "revoke"]
    assert len(revoked) <= 0.05 * len(birthright), f"{len(revoked)} of {len(birthright)} birthright grants"
    team_tools = [k for k in found if k[1].startswith("tool-") and k not in outliers]
    assert sum(found[k].advice == "keep" for k in team_tools) >= 0.9 * len(team_tools)  # common by hand: keep
    for (_, group), recommendation in found.items():
        assert group in recommendation.evidence and "peers (" in recommendation.evidence
        assert "last sign-in" in recommendation.evidence
    employee_id, group = sorted(flagged)[0]
    line = found[(employee_id, group)].evidence
    assert re.match(
        rf"^\d+ of \d+ peers \([^)]+\) hold {re.escape(group)}; granted by hand; last sign-in ", line
    )


def test_recommendations_are_deterministic_and_blind_to_everything_but_department_and_title() -> None:
    employees, accounts, provenance, _ = roster()
    first = recommend_all(employees, accounts, provenance)
    rng = random.Random(3)
    shuffled = [
        e.model_copy(
            update={
                "first_name": "Zed",
                "last_name": "Other",
                "location": rng.choice(["Nairobi", "São Paulo"]),
                "employment_type": "Intern",
                "manager_id": "E00001",
                "hire_date": date(2010, 1, 1),
            }
        )
        for e in reversed(employees)
    ]
    assert recommend_all(shuffled, accounts, provenance) == first


def test_a_grant_unused_beyond_the_dormant_days_is_revoked_with_its_last_sign_in() -> None:
    employees, accounts, provenance, _ = roster()
    employee = next(e for e in employees if e.department == "Sales")
    tool = _tool("Sales", employee.title or "")
    stale = accounts[employee.employee_id].model_copy(
        update={
            "groups": accounts[employee.employee_id].groups | {tool},
            "last_sign_in": NOW - timedelta(days=200),
        }
    )
    peers = Peers(employees, {eid: a.groups for eid, a in accounts.items()})
    found = recommend(tool, employee, stale, peers=peers, provenance="manual", policy=POLICY, now=NOW)
    assert found.advice == "revoke" and found.evidence.startswith("unused for over 90 days")
    assert f"last sign-in {(NOW - timedelta(days=200)):%Y-%m-%d}" in found.evidence


def test_an_approved_grant_is_kept_and_too_few_peers_recommends_nothing() -> None:
    loner = Employee(
        employee_id="X1",
        first_name="A",
        last_name="B",
        department="Legal",
        title="Counsel",
        status=EmployeeStatus.ACTIVE,
    )
    account = Account(id="x1", user_name="x1", employee_id="X1", groups=frozenset({"contracts"}))
    peers = Peers([loner], {"X1": account.groups})
    nothing = recommend("contracts", loner, account, peers=peers, provenance="manual", policy=POLICY, now=NOW)
    assert nothing.advice == "none" and nothing.evidence.startswith("too few peers")
    kept = recommend("contracts", loner, account, peers=peers, provenance="approval", policy=POLICY, now=NOW)
    assert kept.advice == "keep" and "approved" in kept.evidence


def test_account_findings_are_recommended_from_their_own_evidence() -> None:
    account = Account(id="o1", user_name="ghost", employee_id="", groups=frozenset())
    orphan = Finding(
        id="f1", kind=FindingKind.ORPHAN, account_id="o1", user_name="ghost", employee_id=None, detail="x"
    )
    found = recommend_finding(
        orphan, None, account, peers=Peers([], {}), provenance="manual", policy=POLICY, now=NOW
    )
    assert found.advice == "revoke" and "no HR record" in found.evidence


def test_the_policy_names_the_peer_definition_and_nothing_else_is_read() -> None:
    employees, accounts, provenance, outliers = roster(people=400)
    by_department = Peers(employees, {eid: a.groups for eid, a in accounts.items()}, ["department"])
    employee_id, group = sorted(outliers)[0]
    employee = next(e for e in employees if e.employee_id == employee_id)
    who, _, total = by_department.share(employee, group) or ("", 0, 0)
    assert who == employee.department and total == sum(
        1 for e in employees if e.department == employee.department and e is not employee
    )
    with pytest.raises(ValueError):
        Policy.model_validate({"review": {"peers": ["department", "location"]}})
