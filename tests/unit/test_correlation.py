"""Correlation situations (lifecycle.correlation) and planning every target (lifecycle.targets, sync_plan)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from lifecycle.actions import ActionKind as K
from lifecycle.correlation import Situation, correlate
from lifecycle.policy import NamingPolicy, Policy
from lifecycle.sync_plan import Snapshot, TakenNames, TargetView, plan_all
from models.domain import Account, Employee, EmployeeStatus

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NAMING = NamingPolicy(username="{given}.{last}", email_domain="example.com")
STEPS = ["employee_id", "email", "user_name"]
POLICY = Policy.model_validate(
    {
        "naming": {"username": "{given}.{last}", "email_domain": "example.com"},
        "birthright": [{"groups": ["all-staff"]}],
        "leaver": {"delete_after_days": 30},
        "targets": {
            "github": {
                "account_when": {"department": "Engineering"},
                "after": "directory",
                "birthright": [
                    {"groups": ["developers"]},
                    {"match": {"title": "Staff Engineer"}, "groups": ["staff-engineers"]},
                ],
            }
        },
    }
)


def person(eid: str, first: str, last: str, **extra: object) -> Employee:
    fields: dict[str, object] = dict(
        employee_id=eid,
        first_name=first,
        last_name=last,
        work_email=f"{first.lower()}.{last.lower()}@example.com",
        department="Engineering",
        title="Engineer",
        status=EmployeeStatus.ACTIVE,
        hire_date=date(2025, 1, 1),
    )
    fields.update(extra)
    return Employee.model_validate(fields)


def account(
    aid: str, user_name: str, employee_id: str = "", email: str | None = None, **extra: object
) -> Account:
    return Account(id=aid, user_name=user_name, employee_id=employee_id, email=email, **extra)  # type: ignore[arg-type]


ADA = person("E1", "Ada", "Lovelace")
ALAN = person("E2", "Alan", "Turing", work_email="alan@example.com")
TWIN_A = person("E3", "Quinn", "Zephyr", work_email="quinn.zephyr@example.com")
TWIN_B = person("E4", "Quinn", "Zephyr", work_email="quinn.zephyr2@example.com")
SALES = person("E5", "Sal", "Es", department="Sales")


def test_each_situation_and_the_step_that_decided_it() -> None:
    found = correlate(
        [
            account("a1", "whatever", employee_id="E1"),  # linked by the employee id attribute
            account("a2", "x", email="ALAN@example.com"),  # unlinked: the work e-mail (case-insensitive)
            account("a3", "quinn.zephyr"),  # userName formed for two people: disputed
            account("a4", "ghost.one", email="ghost@elsewhere.test"),  # nobody: an orphan
        ],
        [ADA, ALAN, TWIN_A, TWIN_B],
        STEPS,
        NAMING,
    )
    by_id = {c.account.id: c for c in found.accounts}
    assert (by_id["a1"].situation, by_id["a1"].matched_by) == (Situation.LINKED, "employee_id")
    assert (by_id["a2"].situation, by_id["a2"].employee_ids, by_id["a2"].matched_by) == (
        Situation.UNLINKED,
        ("E2",),
        "email",
    )
    assert (by_id["a3"].situation, by_id["a3"].employee_ids) == (Situation.DISPUTED, ("E3", "E4"))
    assert by_id["a4"].situation is Situation.UNMATCHED
    assert found.disputed_employees == {"E3", "E4"}
    assert set(found.owner) == {"E1", "E2"}


def test_the_first_step_that_finds_anyone_decides() -> None:
    """The e-mail names Ada, the userName names Alan: the e-mail step comes first and decides."""
    found = correlate(
        [account("a", "alan.turing", email="ada.lovelace@example.com")], [ADA, ALAN], STEPS, NAMING
    )
    assert found.accounts[0].employee_ids == ("E1",)
    reordered = correlate(
        [account("a", "alan.turing", email="ada.lovelace@example.com")],
        [ADA, ALAN],
        ["user_name", "email"],
        NAMING,
    )
    assert reordered.accounts[0].employee_ids == ("E2",)


def test_two_accounts_for_one_person_are_never_linked() -> None:
    found = correlate(
        [account("a", "ada.lovelace"), account("b", "x", email="ada.lovelace@example.com")],
        [ADA],
        STEPS,
        NAMING,
    )
    assert [c.situation for c in found.accounts] == [Situation.DISPUTED, Situation.DISPUTED]
    assert found.owner == {}
    # a linked account wins over an unlinked one matching the same person; the unlinked one is disputed
    found = correlate(
        [account("a", "y", employee_id="E1"), account("b", "ada.lovelace")], [ADA], STEPS, NAMING
    )
    assert [c.situation for c in found.accounts] == [Situation.LINKED, Situation.DISPUTED]


def test_correlation_runs_against_all_employees_not_only_account_when() -> None:
    """A Sales person's e-mail on a target account: it is theirs (unlinked), not an orphan."""
    found = correlate([account("a", "x", email="sal.es@example.com")], [SALES], STEPS, NAMING)
    assert found.accounts[0].situation is Situation.UNLINKED


def _snapshot(employees: list[Employee], directory: dict[str, Account], github: list[Account]) -> Snapshot:
    steps = POLICY.targets["github"].correlation
    correlation = correlate(github, employees, steps, NAMING)
    owned = {e: c.account for e, c in correlation.owner.items() if c.situation is Situation.LINKED}
    return Snapshot(
        employees=[(e.employee_id, e) for e in employees],
        accounts=directory,
        taken=TakenNames("example.com"),
        account_holders=set(directory),
        targets={"github": TargetView(accounts=owned, correlation=correlation)},
    )


def _kinds(plan_actions: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(a.target, a.kind.value, a.subject) for a in plan_actions]


def test_a_joiner_in_engineering_gets_both_accounts_directory_first_sales_only_the_directory() -> None:
    result = plan_all(_snapshot([ADA, SALES], {}, []), POLICY, NOW, histories={}, settled=set())
    plans = {w.plan.employee_id: w.plan for w in result.works}
    ada = _kinds(plans["E1"].actions)
    assert ada.index(("directory", "create_account", "ada.lovelace")) < ada.index(
        ("github", "create_account", "ada.lovelace")
    )
    assert ("github", "add_membership", "developers") in ada
    github_create = next(a for a in plans["E1"].for_target("github") if a.kind is K.CREATE_ACCOUNT)
    assert github_create.after == "directory" and github_create.attributes.manager_id is None
    assert github_create.key == "E1:create_account:ada.lovelace@github"
    assert plans["E5"].for_target("github") == []


def test_an_unlinked_account_is_adopted_first_and_reconciled_never_duplicated() -> None:
    directory = {"E1": account("d1", "ada.lovelace", "E1", groups=frozenset({"all-staff"}), given_name="Ada")}
    github = [account("g1", "ada.lovelace", email="ada.lovelace@example.com")]
    result = plan_all(_snapshot([ADA], directory, github), POLICY, NOW, histories={}, settled=set())
    (work,) = result.works
    assert work.plan.actions[0].kind is K.LINK_ACCOUNT
    assert (work.plan.actions[0].target, work.plan.actions[0].subject) == ("github", "g1")
    assert not [a for a in work.plan.actions if a.kind is K.CREATE_ACCOUNT]
    assert ("github", "add_membership", "developers") in _kinds(work.plan.actions)
    assert work.accounts["github"] is not None and work.accounts["github"].employee_id == "E1"


def test_people_named_in_a_dispute_get_no_new_account_there() -> None:
    result = plan_all(
        _snapshot([TWIN_A, TWIN_B], {}, [account("g", "quinn.zephyr")]),
        POLICY,
        NOW,
        histories={},
        settled=set(),
    )
    for work in result.works:
        assert work.plan.for_target("github") == []
        assert work.plan.for_target("directory")  # the directory account is still made


def test_a_mover_out_of_account_when_is_disabled_there_and_a_leaver_everywhere_directory_last() -> None:
    moved = ADA.model_copy(update={"department": "Sales"})
    directory = {"E1": account("d1", "ada.lovelace", "E1", groups=frozenset({"all-staff"}))}
    github = [account("g1", "ada.lovelace", "E1", groups=frozenset({"developers"}))]
    snap = _snapshot([moved], directory, github)
    snap.targets["github"].accounts["E1"] = github[0]
    (work,) = plan_all(snap, POLICY, NOW, histories={}, settled=set()).works
    assert ("github", "disable_account", "ada.lovelace") in _kinds(work.plan.actions)
    assert ("github", "remove_membership", "developers") in _kinds(work.plan.actions)
    assert not work.plan.of_kind(K.SCHEDULE) or all(
        a.target == "directory" for a in work.plan.of_kind(K.SCHEDULE)
    )
    assert "account_when" in work.plan.for_target("github")[0].reason

    gone = ADA.model_copy(update={"status": EmployeeStatus.TERMINATED, "termination_date": date(2026, 5, 1)})
    snap = _snapshot([gone], directory, github)
    snap.targets["github"].accounts["E1"] = github[0]
    (work,) = plan_all(snap, POLICY, NOW, histories={}, settled=set()).works
    disables = [a.target for a in work.plan.of_kind(K.DISABLE_ACCOUNT)]
    assert disables == ["github", "directory"]


@pytest.mark.parametrize("name", ["GitHub", "directory", "with-dash"])
def test_target_names_are_lower_case_and_not_directory(name: str) -> None:
    with pytest.raises(ValueError, match="target"):
        Policy.model_validate({"targets": {name: {}}})


def test_a_mover_out_is_deleted_there_after_the_grace_period_counted_from_that_targets_disable() -> None:
    """The target's own ledger history counts (not the directory's): disabled 31 days ago, deleted now."""
    from datetime import timedelta

    from lifecycle.planner import History

    moved = ADA.model_copy(update={"department": "Sales"})
    directory = {"E1": account("d1", "ada.lovelace", "E1", groups=frozenset({"all-staff"}))}
    github = [account("g1", "ada.lovelace", "E1", active=False)]
    snap = _snapshot([moved], directory, github)
    snap.targets["github"].accounts["E1"] = github[0]
    snap.targets["github"].histories = {"E1": History(disabled_at=NOW - timedelta(days=31), left_before=True)}
    (work,) = plan_all(snap, POLICY, NOW, histories={}, settled=set()).works
    assert _kinds(work.plan.for_target("github")) == [("github", "delete_account", "ada.lovelace")]
    snap.targets["github"].histories = {"E1": History(disabled_at=NOW - timedelta(days=3), left_before=True)}
    (work,) = plan_all(snap, POLICY, NOW, histories={}, settled=set()).works
    assert work.plan.for_target("github") == []  # within the grace period
