"""Example-based tests of the joiner/mover/leaver planner, one situation at a time (lifecycle.planner)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

import pytest

from lifecycle.actions import ActionKind, AddMembership, CreateAccount, Plan
from lifecycle.planner import History, plan, timeline
from lifecycle.policy import (
    BirthrightRule,
    LeaverPolicy,
    Policy,
    PrivilegedGroup,
    TicketPolicy,
    TicketTemplate,
)
from lifecycle.simulate import apply_plan
from models.domain import Account, AccountAttributes, Employee, EmployeeStatus
from tests.support.actions import make_action, params

K = ActionKind

POLICY = Policy(
    birthright=[
        BirthrightRule(groups=["all-staff"]),
        BirthrightRule(match={"department": "Engineering"}, groups=["engineering", "github-users"]),
        BirthrightRule(match={"department": "Sales"}, groups=["sales", "crm-users"]),
        BirthrightRule(match={"department": "Ops"}, groups=["ops", "prod-admin"]),
    ],
    privileged_groups=[
        PrivilegedGroup(name="prod-admin", approvers=["security-lead"], approval_timeout_hours=48),
        PrivilegedGroup(name="payments-approve"),
    ],
    prehire_days=7,
    default_timezone="UTC",
    location_timezones={"Berlin": "Europe/Berlin", "New York": "America/New_York"},
    leaver=LeaverPolicy(timing="at_termination", termination_time="18:00", delete_after_days=30),
    tickets=TicketPolicy(
        joiner=[
            TicketTemplate(
                purpose="laptop", title="Laptop for {user_name}", body="Dept {department}", queue="IT"
            )
        ],
        mover=[TicketTemplate(purpose="access-review", title="Moved: {employee_id} to {department}")],
        leaver=[
            TicketTemplate(purpose="equipment-return", title="Return: {employee_id} on {termination_date}")
        ],
    ),
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def employee(**fields: object) -> Employee:
    base: dict[str, object] = {
        "employee_id": "E1",
        "first_name": "John",
        "last_name": "Smith",
        "department": "Engineering",
        "title": "Engineer",
        "manager_id": "M1",
        "location": "Berlin",
        "status": EmployeeStatus.ACTIVE,
        "hire_date": date(2025, 3, 3),
    }
    return Employee.model_validate(base | fields)


def account_for(
    emp: Employee, *, active: bool = True, groups: set[str] | None = None, **fields: object
) -> Account:
    """The account a fully applied joiner plan would leave (then overridden by ``fields``)."""
    base: dict[str, object] = {
        "id": "A1",
        "user_name": "john.smith",
        "employee_id": emp.employee_id,
        "given_name": emp.given_name,
        "family_name": emp.last_name,
        "display_name": emp.display_name,
        "email": "john.smith@example.com",
        "title": emp.title,
        "department": emp.department,
        "manager_id": emp.manager_id,
        "active": active,
        "groups": frozenset(groups if groups is not None else {"all-staff", "engineering", "github-users"}),
    }
    return Account.model_validate(base | fields)


def kinds(p: Plan) -> list[tuple[ActionKind, str]]:
    return [(a.kind, a.subject) for a in p.actions]


def only(p: Plan, kind: ActionKind) -> Any:
    (action,) = p.of_kind(kind)
    return action


# --- joiners ---------------------------------------------------------------------------------------------


def test_before_prehire_window_only_schedules_create() -> None:
    """Before hire_date - prehire_days (00:00 Berlin) the plan is one SCHEDULE create at that instant."""
    p = plan(employee(status=EmployeeStatus.PENDING), None, POLICY, utc(2025, 2, 1))
    assert p.event == "joiner"
    assert kinds(p) == [(K.SCHEDULE, "create")]
    # 2025-02-24 00:00 CET = 2025-02-23 23:00 UTC
    assert params(p.actions[0]) == {"event": "create", "at": "2025-02-23T23:00:00+00:00"}
    assert p.actions[0].key == "E1:schedule:create:2025-02-23T23:00:00+00:00"


def test_prehire_window_creates_disabled_account_in_order() -> None:
    """In the prehire window: CREATE disabled, SCHEDULE enable at hire day 00:00 local, groups, tickets."""
    p = plan(employee(status=EmployeeStatus.PENDING), None, POLICY, utc(2025, 2, 26))
    assert p.event == "joiner"
    assert kinds(p) == [
        (K.CREATE_ACCOUNT, "john.smith"),
        (K.SCHEDULE, "enable"),
        (K.ADD_MEMBERSHIP, "all-staff"),
        (K.ADD_MEMBERSHIP, "engineering"),
        (K.ADD_MEMBERSHIP, "github-users"),
        (K.OPEN_TICKET, "laptop"),
    ]
    create = params(p.actions[0])
    assert create["active"] is False
    assert create["email"] == "john.smith@example.com"
    assert create["employee_id"] == "E1"
    assert params(p.actions[1])["at"] == "2025-03-02T23:00:00+00:00"  # 2025-03-03 00:00 Europe/Berlin
    assert p.actions[2].reason == "entitled: birthright rule 1 (everyone)"
    assert params(p.actions[-1])["reference"] == "tenure:E1:laptop:2025-03-03"  # occasion: the hire date


def test_exactly_at_window_opening_creates() -> None:
    """The prehire window opens at its instant (inclusive)."""
    p = plan(employee(status=EmployeeStatus.PENDING), None, POLICY, utc(2025, 2, 23, 23, 0))
    assert p.actions[0].kind is K.CREATE_ACCOUNT


def test_hire_day_reached_without_account_creates_enabled() -> None:
    """A late HR entry (hire day already begun) creates the account enabled, no enable schedule."""
    p = plan(employee(), None, POLICY, utc(2025, 3, 2, 23, 30))
    assert params(only(p, K.CREATE_ACCOUNT))["active"] is True
    assert p.of_kind(K.SCHEDULE) == []


def test_pending_account_enabled_on_hire_day() -> None:
    """The pre-hire account is enabled once the hire day begins locally; no joiner tickets again."""
    emp = employee(status=EmployeeStatus.PENDING)
    acc = account_for(emp, active=False)
    before = plan(emp, acc, POLICY, utc(2025, 3, 2, 22, 59))
    assert kinds(before) == [(K.SCHEDULE, "enable")]
    after = plan(emp, acc, POLICY, utc(2025, 3, 2, 23, 0))
    assert kinds(after) == [(K.ENABLE_ACCOUNT, "john.smith")]
    assert after.event == "joiner"


def test_collision_gets_suffix() -> None:
    """Another account holding john.smith makes the joiner john.smith2 (email follows)."""
    p = plan(employee(), None, POLICY, utc(2025, 3, 10), taken_user_names=frozenset({"john.smith"}))
    create = only(p, K.CREATE_ACCOUNT)
    assert create.subject == "john.smith2"
    assert params(create)["email"] == "john.smith2@example.com"


def test_empty_user_name_is_skipped() -> None:
    """A name that folds to nothing plans no actions and says why."""
    p = plan(employee(first_name="李", last_name="王"), None, POLICY, utc(2025, 3, 10))
    assert p.actions == []
    assert p.skipped_reason is not None and "userName" in p.skipped_reason


def test_pending_without_hire_date_is_skipped() -> None:
    """A pending hire without a hire date cannot be scheduled."""
    p = plan(employee(status=EmployeeStatus.PENDING, hire_date=None), None, POLICY, utc(2025, 3, 10))
    assert p.actions == [] and p.skipped_reason


def test_unknown_department_gets_only_everyone_groups() -> None:
    """A department no rule knows gets only the everyone-rule groups."""
    p = plan(employee(department="Astrology"), None, POLICY, utc(2025, 3, 10))
    assert [a.subject for a in p.of_kind(K.ADD_MEMBERSHIP)] == ["all-staff"]


# --- active, movers, privileged groups -------------------------------------------------------------------


def test_active_in_sync_plans_nothing() -> None:
    """An enabled account with equal attributes and its groups needs nothing."""
    emp = employee()
    p = plan(emp, account_for(emp), POLICY, utc(2025, 6, 1))
    assert p.actions == [] and p.event == "none"


def test_mover_updates_changed_attributes_and_groups() -> None:
    """A department change: UPDATE only what changed, ADD new birthright, REMOVE old, keep manual groups."""
    old = employee()
    acc = account_for(old, groups={"all-staff", "engineering", "github-users", "book-club"})
    new = employee(department="Sales", title="Account Executive")
    p = plan(new, acc, POLICY, utc(2025, 6, 1))
    assert p.event == "mover"
    assert kinds(p) == [
        (K.UPDATE_ACCOUNT, "john.smith"),
        (K.ADD_MEMBERSHIP, "crm-users"),
        (K.ADD_MEMBERSHIP, "sales"),
        (K.REMOVE_MEMBERSHIP, "engineering"),
        (K.REMOVE_MEMBERSHIP, "github-users"),
        (K.OPEN_TICKET, "access-review"),
    ]
    assert params(p.actions[0]) == {"changes": {"department": "Sales", "title": "Account Executive"}}
    assert p.actions[0].reason.startswith("attributes changed: department: ")
    assert params(p.actions[-1])["title"] == "Moved: E1 to Sales"
    assert (
        params(p.actions[-1])["reference"]
        == "tenure:E1:access-review:" + hashlib.sha256(b"Sales|Account Executive").hexdigest()[:8]
    )


def test_second_move_gets_its_own_ticket_reference() -> None:
    """A second move opens a new mover ticket; re-planning the same move repeats the same reference."""
    first = employee(department="Sales", title="Account Executive")
    second = employee(department="Ops", title="Account Executive")

    def reference(emp: Employee, acc: Account, now: datetime) -> str:
        return str(params(only(plan(emp, acc, POLICY, now), K.OPEN_TICKET))["reference"])

    ref1 = reference(first, account_for(employee()), utc(2025, 6, 1))
    ref1_again = reference(first, account_for(employee()), utc(2025, 6, 2))
    ref2 = reference(second, account_for(first), utc(2025, 9, 1))
    assert ref1 == ref1_again != ref2
    assert ref2.startswith("tenure:E1:access-review:")


def test_mover_without_department_or_title_change_opens_no_ticket() -> None:
    """A manager change updates the account but opens no mover ticket."""
    emp = employee(manager_id="M2")
    p = plan(emp, account_for(employee()), POLICY, utc(2025, 6, 1))
    assert kinds(p) == [(K.UPDATE_ACCOUNT, "john.smith")]
    assert params(p.actions[0]) == {"changes": {"manager_id": "M2"}}


def test_name_change_keeps_user_name_and_email() -> None:
    """A legal name change updates names but never renames userName or email."""
    emp = employee(last_name="Jones")
    p = plan(emp, account_for(employee()), POLICY, utc(2025, 6, 1))
    changes = {"family_name": "Jones", "display_name": "John Jones"}
    assert params(only(p, K.UPDATE_ACCOUNT)) == {"changes": changes}


def test_privileged_group_from_rule_requests_approval() -> None:
    """A rule naming a privileged group yields REQUEST_APPROVAL, not membership, without an approval."""
    p = plan(employee(department="Ops"), None, POLICY, utc(2025, 3, 10))
    assert "prod-admin" not in [a.subject for a in p.of_kind(K.ADD_MEMBERSHIP)]
    request = only(p, K.REQUEST_APPROVAL)
    assert request.subject == "prod-admin"
    assert params(request) == {"approvers": ["security-lead"], "timeout_hours": 48}
    assert kinds(p).index((K.REQUEST_APPROVAL, "prod-admin")) > kinds(p).index((K.ADD_MEMBERSHIP, "ops"))
    assert kinds(p).index((K.REQUEST_APPROVAL, "prod-admin")) < kinds(p).index((K.OPEN_TICKET, "laptop"))


def test_approved_privileged_group_is_added() -> None:
    """With a recorded approval the privileged group is granted."""
    p = plan(
        employee(department="Ops"),
        None,
        POLICY,
        utc(2025, 3, 10),
        history=History(granted=frozenset({"prod-admin"})),
    )
    assert "prod-admin" in [a.subject for a in p.of_kind(K.ADD_MEMBERSHIP)]
    assert p.of_kind(K.REQUEST_APPROVAL) == []


def test_privileged_membership_with_approval_is_left_alone() -> None:
    """A privileged membership backed by an approval is not removed; without one it is (managed group)."""
    emp = employee()
    acc = account_for(emp, groups={"all-staff", "engineering", "github-users", "payments-approve"})
    kept = plan(emp, acc, POLICY, utc(2025, 6, 1), history=History(granted=frozenset({"payments-approve"})))
    assert kept.actions == []
    removed = plan(emp, acc, POLICY, utc(2025, 6, 1))
    assert kinds(removed) == [(K.REMOVE_MEMBERSHIP, "payments-approve")]


def test_rule_privileged_membership_awaiting_approval_is_kept() -> None:
    """A privileged group a rule names and the account already holds is neither removed nor re-requested."""
    emp = employee(department="Ops")
    acc = account_for(emp, groups={"all-staff", "ops", "prod-admin"})
    assert plan(emp, acc, POLICY, utc(2025, 6, 1)).actions == []


def test_leave_keeps_account_enabled_and_maintained() -> None:
    """An employee on leave keeps an enabled account; attribute changes still apply."""
    emp = employee(status=EmployeeStatus.LEAVE, title="Senior Engineer")
    p = plan(emp, account_for(employee()), POLICY, utc(2025, 6, 1))
    assert K.DISABLE_ACCOUNT not in [a.kind for a in p.actions]
    assert params(only(p, K.UPDATE_ACCOUNT)) == {"changes": {"title": "Senior Engineer"}}


def test_future_termination_is_scheduled_for_active_employee() -> None:
    """A known termination date schedules the disable at 18:00 local, after the other actions."""
    emp = employee(termination_date=date(2025, 7, 31), location="New York")
    p = plan(emp, account_for(emp), POLICY, utc(2025, 6, 1))
    assert p.event == "leaver"
    assert kinds(p) == [(K.SCHEDULE, "disable")]
    assert params(p.actions[0])["at"] == "2025-07-31T22:00:00+00:00"  # 18:00 EDT


# --- leavers ---------------------------------------------------------------------------------------------


def leaver(**fields: object) -> Employee:
    return employee(status=EmployeeStatus.TERMINATED, termination_date=date(2025, 7, 31), **fields)


def test_leaver_before_termination_time_schedules_disable() -> None:
    """at_termination, before 18:00 local on the last day: SCHEDULE disable, keep groups, open tickets."""
    emp = leaver()
    p = plan(emp, account_for(emp), POLICY, utc(2025, 7, 31, 12))
    assert p.event == "leaver"
    assert kinds(p) == [(K.SCHEDULE, "disable"), (K.OPEN_TICKET, "equipment-return")]
    assert params(p.actions[0])["at"] == "2025-07-31T16:00:00+00:00"  # 18:00 CEST
    assert params(p.actions[1])["reference"] == "tenure:E1:equipment-return:2025-07-31"


def test_leaver_after_termination_time_disables_then_cleans_up() -> None:
    """Past the termination instant: disable, remove managed groups, tickets, schedule delete (in order)."""
    emp = leaver()
    acc = account_for(emp, groups={"all-staff", "engineering", "github-users", "book-club"})
    p = plan(emp, acc, POLICY, utc(2025, 7, 31, 16))
    assert kinds(p) == [
        (K.DISABLE_ACCOUNT, "john.smith"),
        (K.REMOVE_MEMBERSHIP, "all-staff"),
        (K.REMOVE_MEMBERSHIP, "engineering"),
        (K.REMOVE_MEMBERSHIP, "github-users"),
        (K.OPEN_TICKET, "equipment-return"),
        (K.SCHEDULE, "delete"),
    ]
    assert params(p.actions[-1])["at"] == "2025-08-30T16:00:00+00:00"
    after = apply_plan(acc, p)
    assert after is not None and not after.active and after.groups == {"book-club"}


def test_leaver_immediate_disables_before_termination_date() -> None:
    """timing immediate disables now even though the termination date lies ahead."""
    policy = POLICY.model_copy(update={"leaver": LeaverPolicy(timing="immediate")})
    emp = leaver()
    p = plan(emp, account_for(emp), policy, utc(2025, 7, 1))
    assert p.actions[0].kind is K.DISABLE_ACCOUNT
    assert p.actions[0].reason == "leaver: policy timing is immediate"
    assert p.of_kind(K.SCHEDULE) == []  # delete_after_days is None here


def test_leaver_past_delete_deletes_last() -> None:
    """Past delete_after_days the account is deleted, after everything else."""
    emp = leaver()
    acc = account_for(emp, active=False, groups=set())
    p = plan(emp, acc, POLICY, utc(2025, 9, 1))
    assert kinds(p) == [(K.OPEN_TICKET, "equipment-return"), (K.DELETE_ACCOUNT, "john.smith")]
    assert apply_plan(acc, p) is None


def test_leaver_keeps_groups_when_policy_says_so() -> None:
    """remove_groups false leaves memberships on the disabled account."""
    policy = POLICY.model_copy(update={"leaver": LeaverPolicy(remove_groups=False)})
    emp = leaver()
    p = plan(emp, account_for(emp), policy, utc(2025, 8, 1))
    assert p.of_kind(K.REMOVE_MEMBERSHIP) == []
    assert p.of_kind(K.DISABLE_ACCOUNT)


def test_leaver_without_termination_date_disables_now() -> None:
    """Terminated without a date: disable now; the delete counts its grace period from this disable."""
    emp = employee(status=EmployeeStatus.TERMINATED)
    p = plan(emp, account_for(emp), POLICY, utc(2025, 8, 1))
    assert p.actions[0].kind is K.DISABLE_ACCOUNT
    assert p.of_kind(K.DELETE_ACCOUNT) == []
    assert [(a.event, a.at) for a in p.of_kind(K.SCHEDULE)] == [("delete", utc(2025, 8, 31))]


def test_termination_instant_passed_while_status_active_disables() -> None:
    """HR still says active after the termination instant: dates win, the account is disabled."""
    emp = employee(termination_date=date(2025, 7, 31))
    p = plan(emp, account_for(emp), POLICY, utc(2025, 8, 1))
    assert p.event == "leaver"
    assert p.actions[0].kind is K.DISABLE_ACCOUNT


def test_terminated_before_start_without_account_is_skipped() -> None:
    """Offer withdrawn before the start date: no account is created, and the plan says why."""
    emp = employee(status=EmployeeStatus.TERMINATED, termination_date=date(2025, 2, 28))
    p = plan(emp, None, POLICY, utc(2025, 2, 26))
    assert p.actions == []
    assert p.skipped_reason is not None and "before the start date" in p.skipped_reason


def test_terminated_before_start_with_prehire_account_disables_it() -> None:
    """Offer withdrawn after the pre-hire account was created: it is cleaned up like any leaver."""
    emp = employee(status=EmployeeStatus.TERMINATED, termination_date=date(2025, 2, 25))
    acc = account_for(emp, active=False)
    p = plan(emp, acc, POLICY, utc(2025, 2, 26))
    assert (K.REMOVE_MEMBERSHIP, "all-staff") in kinds(p)
    assert p.of_kind(K.CREATE_ACCOUNT, K.ENABLE_ACCOUNT) == []


# --- rehire, orphans, bad input --------------------------------------------------------------------------


def test_rehire_enables_the_same_account() -> None:
    """A rehired employee's disabled account is enabled and re-granted; never a second account."""
    emp = employee(hire_date=date(2026, 1, 5), termination_date=date(2025, 7, 31))
    acc = account_for(emp, active=False, groups=set())
    p = plan(emp, acc, POLICY, utc(2026, 1, 5, 9))
    assert p.event == "rehire"
    assert kinds(p) == [
        (K.ENABLE_ACCOUNT, "john.smith"),
        (K.ADD_MEMBERSHIP, "all-staff"),
        (K.ADD_MEMBERSHIP, "engineering"),
        (K.ADD_MEMBERSHIP, "github-users"),
        (K.OPEN_TICKET, "laptop"),
    ]
    # a new occasion: the rehire's laptop ticket is not the first tenure's (hire date 2025-03-03)
    assert params(p.actions[-1])["reference"] == "tenure:E1:laptop:2026-01-05"


def test_rehire_recognised_from_the_ledger_when_hr_cleared_the_termination_date() -> None:
    """A disabled account Tenure once disabled as a leaver is a rehire even without a termination date;
    a disabled account without that evidence (disabled by hand) is enabled without joiner tickets."""
    emp = employee(hire_date=date(2026, 1, 5), termination_date=None)
    acc = account_for(emp, active=False, groups={"all-staff", "engineering", "github-users"})
    rehired = plan(emp, acc, POLICY, utc(2026, 1, 5, 9), history=History(left_before=True))
    assert rehired.event == "rehire"
    assert kinds(rehired) == [(K.ENABLE_ACCOUNT, "john.smith"), (K.OPEN_TICKET, "laptop")]
    assert params(rehired.actions[-1])["reference"] == "tenure:E1:laptop:2026-01-05"
    by_hand = plan(emp, acc, POLICY, utc(2026, 1, 5, 9))
    assert by_hand.event == "joiner" and kinds(by_hand) == [(K.ENABLE_ACCOUNT, "john.smith")]


def test_rehire_before_start_schedules_enable() -> None:
    """A rehire whose new hire day lies ahead keeps the account disabled until then."""
    emp = employee(
        status=EmployeeStatus.PENDING, hire_date=date(2026, 1, 5), termination_date=date(2025, 7, 31)
    )
    acc = account_for(emp, active=False)
    p = plan(emp, acc, POLICY, utc(2025, 12, 1))
    assert p.event == "rehire"
    assert params(only(p, K.SCHEDULE)) == {"event": "enable", "at": "2026-01-04T23:00:00+00:00"}
    assert p.of_kind(K.CREATE_ACCOUNT, K.ENABLE_ACCOUNT) == []


def test_orphan_account_plans_nothing() -> None:
    """An account without an HR record is left to the access review."""
    p = plan(None, account_for(employee()), POLICY, utc(2025, 6, 1))
    assert p.event == "none" and p.actions == []
    assert p.employee_id == "E1"
    assert p.skipped_reason is not None and "orphan" in p.skipped_reason


def test_bad_arguments_raise() -> None:
    """A naive now, a foreign account or no input at all is a caller bug."""
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(employee(), None, POLICY, datetime(2025, 6, 1))
    with pytest.raises(ValueError, match="belongs to employee E2"):
        plan(employee(), account_for(employee(), employee_id="E2"), POLICY, utc(2025, 6, 1))
    with pytest.raises(ValueError, match="employee or an account"):
        plan(None, None, POLICY, utc(2025, 6, 1))


def test_reasons_carry_no_personal_data() -> None:
    """Every action has a reason, and no reason contains the person's name or dates."""
    emp = employee(first_name="Zelda", last_name="Quartz", department="Ops")
    plans = [
        plan(emp, None, POLICY, utc(2025, 2, 26)),
        plan(
            leaver(first_name="Zelda", last_name="Quartz"),
            account_for(emp, user_name="z.q"),
            POLICY,
            utc(2025, 9, 1),
        ),
    ]
    for p in plans:
        assert p.actions
        for action in p.actions:
            assert action.reason
            assert "Zelda" not in action.reason and "Quartz" not in action.reason
            assert "2025" not in action.reason


def test_ticket_renders_only_template_fields() -> None:
    """Ticket text uses the allowed fields; missing ones show as n/a; the reference names the occasion."""
    template = TicketTemplate(
        purpose="badge",
        title="Badge {display_name} {location} {termination_date}",
        body="{user_name}/{manager_id}/{hire_date}/{purpose}",
    )
    policy = POLICY.model_copy(update={"tickets": TicketPolicy(joiner=[template])})
    p = plan(employee(manager_id=None), None, policy, utc(2025, 3, 3, 12))
    (ticket,) = p.of_kind(K.OPEN_TICKET)
    assert ticket.subject == "badge"
    assert params(ticket) == {
        "title": "Badge John Smith Berlin n/a",
        "body": "john.smith/n/a/2025-03-03/badge",
        "queue": None,
        "reference": "tenure:E1:badge:2025-03-03",
    }


def test_timeline_in_employee_time_zone() -> None:
    """Instants follow the location's time zone, including daylight saving."""
    emp = employee(location="New York", hire_date=date(2025, 1, 13), termination_date=date(2025, 7, 4))
    tl = timeline(emp, POLICY)
    assert tl.enable_at == utc(2025, 1, 13, 5)
    assert tl.create_at == utc(2025, 1, 6, 5)
    assert tl.disable_at == utc(2025, 7, 4, 22)
    assert tl.delete_at == utc(2025, 8, 3, 22)
    assert timeline(employee(location="Atlantis"), POLICY).enable_at == utc(2025, 3, 3)  # default UTC


def test_schedule_key_changes_when_date_moves() -> None:
    """A moved hire date yields a new SCHEDULE key, so the ledger does not treat it as done."""
    first = plan(employee(status=EmployeeStatus.PENDING), None, POLICY, utc(2025, 1, 1))
    moved = plan(
        employee(status=EmployeeStatus.PENDING, hire_date=date(2025, 3, 10)), None, POLICY, utc(2025, 1, 1)
    )
    assert first.actions[0].key != moved.actions[0].key
    assert first.actions[0].key.startswith("E1:schedule:create:")


def test_example_policy_joiner_end_to_end() -> None:
    """With examples/policy.yaml, the issue's example joiner gets zoe.angstrom-lukasz, Berlin groups, tickets."""
    from pathlib import Path

    from lifecycle.policy import load_policy

    policy = load_policy(Path(__file__).resolve().parents[2] / "examples" / "policy.yaml")
    emp = employee(first_name="Zoë", last_name="Ångström-Łukasz", status=EmployeeStatus.PENDING)
    p = plan(emp, None, policy, utc(2025, 2, 27))
    assert p.actions[0].subject == "zoe.angstrom-lukasz"
    assert [a.subject for a in p.of_kind(K.ADD_MEMBERSHIP)] == [
        "all-staff",
        "engineering",
        "github-users",
        "office-berlin",
    ]
    assert [a.subject for a in p.of_kind(K.OPEN_TICKET)] == ["laptop", "badge"]
    account = apply_plan(None, p)
    assert account is not None and not account.active
    assert account.email == "zoe.angstrom-lukasz@example.com"
    assert account.groups == {"all-staff", "engineering", "github-users", "office-berlin"}


def test_simulate_rejects_impossible_plans() -> None:
    """The in-memory apply refuses CREATE over an existing account and account actions on none."""
    from lifecycle.simulate import SimulationError

    acc = account_for(employee())
    create = Plan(
        employee_id="E1",
        event="joiner",
        actions=[
            CreateAccount(
                employee_id="E1",
                reason="test",
                attributes=AccountAttributes(**acc.model_dump(exclude={"id", "last_sign_in", "groups"})),
            )
        ],
    )
    with pytest.raises(SimulationError, match="already exists"):
        apply_plan(acc, create)
    enable = Plan(
        employee_id="E1",
        event="rehire",
        actions=[make_action(K.ENABLE_ACCOUNT, "E1", "x", "test")],
    )
    with pytest.raises(SimulationError, match="no account"):
        apply_plan(None, enable)


def test_action_requires_reason_and_keys_are_stable() -> None:
    """An action without a reason is rejected; the ledger key is employee:kind:target."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        AddMembership(employee_id="E1", group="g", reason="")
    assert AddMembership(employee_id="E1", group="g", reason="r").key == "E1:add_membership:g"


# -- adoption (issue #18): the staff a company already has ----------------------------------------------------


def test_first_run_adopts_existing_staff_without_joiner_tickets() -> None:
    """Hired before the adoption date, no ledger entry: linked (ADOPT), attributes and groups reconciled, the
    disabled account enabled — no joiner ticket."""
    emp = employee()
    acc = account_for(emp, active=False, groups={"all-staff"}, title="Intern")
    p = plan(emp, acc, POLICY, utc(2025, 6, 1), adopt_before=date(2025, 6, 1))
    assert p.event == "adopt"
    assert [a.kind for a in p.actions][:3] == [K.ADOPT, K.UPDATE_ACCOUNT, K.ENABLE_ACCOUNT]
    assert not p.of_kind(K.OPEN_TICKET)
    assert {a.subject for a in p.of_kind(K.ADD_MEMBERSHIP)} >= {"engineering"}
    assert (
        p.actions[0].subject == "A1" and p.actions[1].reason == "attributes changed: title: Intern → Engineer"
    )


def test_adoption_creates_a_missing_account_without_tickets() -> None:
    """An employee of long standing without an account gets one, enabled, with birthright groups, no tickets."""
    p = plan(employee(), None, POLICY, utc(2025, 6, 1), adopt_before=date(2025, 6, 1))
    assert p.event == "adopt"
    assert [a.kind for a in p.actions][:2] == [K.ADOPT, K.CREATE_ACCOUNT]
    assert p.actions[1].attributes.active  # type: ignore[union-attr]
    assert not p.of_kind(K.OPEN_TICKET)


def test_hire_on_or_after_the_adoption_date_is_a_joiner_with_tickets() -> None:
    """The adoption date is exclusive: a hire on it (or later) is an ordinary joiner."""
    p = plan(
        employee(hire_date=date(2025, 6, 1)), None, POLICY, utc(2025, 6, 2), adopt_before=date(2025, 6, 1)
    )
    assert p.event == "joiner" and p.of_kind(K.OPEN_TICKET)


def test_a_person_with_a_ledger_entry_is_never_adopted_and_an_adopted_one_never_gets_joiner_tickets() -> None:
    """Adoption is for the first run only; an adopted person whose creation failed is created later, still
    without tickets."""
    seen = plan(
        employee(), None, POLICY, utc(2025, 6, 1), adopt_before=date(2025, 6, 1), history=History(seen=True)
    )
    assert seen.event == "joiner" and seen.of_kind(K.OPEN_TICKET)
    adopted = History(seen=True, adopted=True)
    later = plan(employee(), None, POLICY, utc(2025, 6, 1), adopt_before=date(2025, 6, 1), history=adopted)
    assert later.of_kind(K.CREATE_ACCOUNT) and not later.of_kind(K.OPEN_TICKET)


def test_leavers_are_not_adopted() -> None:
    """A terminated employee on the first run is planned as a leaver (the account is disabled)."""
    emp = employee(status=EmployeeStatus.TERMINATED, termination_date=date(2025, 5, 1))
    p = plan(emp, account_for(emp), POLICY, utc(2025, 6, 1), adopt_before=date(2025, 6, 1))
    assert p.event == "leaver" and p.of_kind(K.DISABLE_ACCOUNT)


def test_mover_change_shows_old_and_new_hr_values_but_only_names_personal_fields() -> None:
    """`department: Sales → Finance`; a changed display name is named, its values are not shown."""
    emp = employee(department="Finance", title="Engineer", last_name="Smythe")
    acc = account_for(employee(department="Sales"))
    update = plan(emp, acc, POLICY, utc(2025, 6, 1)).of_kind(K.UPDATE_ACCOUNT)[0]
    assert "department: Sales → Finance" in update.reason
    assert "display_name changed" in update.reason and "Smythe" not in update.reason
