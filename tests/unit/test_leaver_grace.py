"""A leaver is deleted ``delete_after_days`` after the disable, whatever the termination date (issue
"Hardening", 7): a termination recorded late is disabled now and gets its whole grace period."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from lifecycle.actions import ActionKind
from lifecycle.planner import History, plan
from lifecycle.policy import LeaverPolicy, Policy
from models.domain import Account, Employee, EmployeeStatus

POLICY = Policy(leaver=LeaverPolicy(timing="at_termination", delete_after_days=30, remove_groups=True))
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def leaver(termination: date) -> Employee:
    return Employee(
        employee_id="E1",
        first_name="Ada",
        last_name="Lovelace",
        status=EmployeeStatus.TERMINATED,
        hire_date=date(2020, 1, 6),
        termination_date=termination,
    )


def account(*, active: bool) -> Account:
    return Account(id="a1", user_name="ada.lovelace", employee_id="E1", active=active)


def test_late_termination_is_disabled_now_and_deleted_after_the_grace_period() -> None:
    """Terminated 100 days ago, recorded today: disable now, delete scheduled 30 days from now, not at once."""
    employee = leaver(NOW.date() - timedelta(days=100))
    first = plan(employee, account(active=True), POLICY, NOW)
    assert [a.kind for a in first.actions] == [ActionKind.DISABLE_ACCOUNT, ActionKind.SCHEDULE]
    assert first.of_kind(ActionKind.DELETE_ACCOUNT) == []
    assert first.actions[1].at == NOW + timedelta(days=30)  # type: ignore[union-attr]

    disabled = History(left_before=True, disabled_at=NOW)  # what the ledger records of the disable
    ten_days_on = plan(employee, account(active=False), POLICY, NOW + timedelta(days=10), history=disabled)
    assert ten_days_on.of_kind(ActionKind.DELETE_ACCOUNT) == []
    assert [a.key for a in ten_days_on.of_kind(ActionKind.SCHEDULE)] == [first.actions[1].key]

    due = plan(employee, account(active=False), POLICY, NOW + timedelta(days=30, minutes=1), history=disabled)
    assert [a.kind for a in due.actions] == [ActionKind.DELETE_ACCOUNT]


def test_timely_termination_counts_from_the_recorded_disable() -> None:
    """Disabled at the termination time by Tenure: deleted 30 days after that disable."""
    employee = leaver(date(2026, 6, 1))
    disabled_at = datetime(2026, 6, 1, 18, 5, tzinfo=UTC)  # the nightly run after the 18:00 termination time
    history = History(left_before=True, disabled_at=disabled_at)
    before = plan(employee, account(active=False), POLICY, disabled_at + timedelta(days=29), history=history)
    assert before.of_kind(ActionKind.DELETE_ACCOUNT) == []
    after = plan(employee, account(active=False), POLICY, disabled_at + timedelta(days=30), history=history)
    assert after.of_kind(ActionKind.DELETE_ACCOUNT)
