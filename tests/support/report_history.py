"""Six weeks of history for the report tests, written the way the engine writes it, on a clock moved by hand.

Each week has hires whose accounts became active some hours before (or after) their hire instant, leavers
disabled some hours after their termination instant, a review campaign with decided (kept, revoked) and
undecided items, and — in some weeks — a failed run and a brake trip. Audit rows are written through the one
door (:meth:`engine.applier.Applier.note`, as the applier writes the rows it makes) with ``models.audit``'s
clock pointed at the moment the row stands for; the review tables are the review engine's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

import models.audit
from engine.applier import Applier
from engine.auditor import Auditor
from lifecycle.policy import Policy
from models.audit import Outcome
from models.db import session_scope
from models.domain import Employee, EmployeeStatus
from models.review import ReviewCampaign, ReviewItem

__all__ = ["History", "write_history", "NOW", "WEEKS"]

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WEEKS = 6
POLICY = Policy.model_validate({"default_timezone": "UTC"})


@dataclass
class History:
    employees: dict[str, Employee]
    access_hours: dict[int, list[float]]  # week index (0 = oldest) → hours from the workday's start to access
    revoke_hours: dict[int, list[float]]
    failed_runs: dict[int, int]
    brake_trips: dict[int, int]
    review: dict[int, tuple[int, int, int]]  # week → (items, decided, revoked)


@contextmanager
def _clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """``models.audit``'s ``datetime.now`` answers the moment in the returned one-element list."""
    moment = [NOW]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return moment[0]

    with monkeypatch.context() as patch:
        patch.setattr(models.audit, "datetime", Clock)
        yield moment


def write_history(database_url: str, monkeypatch: pytest.MonkeyPatch) -> History:
    applier = Applier(auditor=Auditor(database_url, actor="test"))
    history = History({}, {}, {}, {}, {}, {})
    with _clock(monkeypatch) as moment:
        for week in range(WEEKS):
            start = NOW - (WEEKS - week) * timedelta(days=7)
            for n, lag in enumerate((-20.0, -2.0, 1.5 * (week + 1))):
                hired = (start + timedelta(days=2 + n)).date()
                employee = _employee(f"H{week}{n}", hire=hired)
                history.employees[employee.employee_id] = employee
                # time to access counts from the working day's start (policy.workday_start, 09:00 UTC here)
                moment[0] = datetime.combine(hired, time(9), tzinfo=UTC) + timedelta(hours=lag)
                applier.note(
                    action="idp.user.enable",
                    target_system="scim",
                    employee_id=employee.employee_id,
                    outcome=Outcome.APPLIED,
                    reason="joiner: hire day reached",
                )
                history.access_hours.setdefault(week, []).append(lag)
            for n, lag in enumerate((0.5, 4.0 + week)):
                ends = (start + timedelta(days=1 + n)).date()
                employee = _employee(f"L{week}{n}", hire=date(2020, 1, 6), termination=ends)
                history.employees[employee.employee_id] = employee
                moment[0] = datetime.combine(ends, time(18), tzinfo=UTC) + timedelta(hours=lag)
                applier.note(
                    action="idp.user.disable",
                    target_system="scim",
                    employee_id=employee.employee_id,
                    outcome=Outcome.APPLIED,
                    reason="leaver: termination time reached",
                )
                history.revoke_hours.setdefault(week, []).append(lag)
            if week % 2:
                moment[0] = start + timedelta(days=3)
                run = Applier(auditor=Auditor(database_url, actor="test", correlation_id=f"run-{week}"))
                for step in ("idp.user.create", "ticket.create"):  # two failed rows, one run
                    run.note(
                        action=step, target_system="scim", outcome=Outcome.FAILED, reason="the IdP refused"
                    )
                history.failed_runs[week] = 1
            if week == WEEKS - 2:
                moment[0] = start + timedelta(days=4)
                applier.note(
                    action="sync.brake", target_system="scim", outcome=Outcome.FAILED, reason="41 disables"
                )
                history.brake_trips[week] = 1
                history.failed_runs[week] = history.failed_runs.get(week, 0) + 1  # the refused sync failed
            history.review[week] = _campaign(database_url, week, start + timedelta(days=5))
    return history


def _employee(employee_id: str, *, hire: date, termination: date | None = None) -> Employee:
    return Employee(
        employee_id=employee_id,
        first_name="Test",
        last_name=employee_id,
        status=EmployeeStatus.TERMINATED if termination else EmployeeStatus.ACTIVE,
        hire_date=hire,
        termination_date=termination,
    )


def _campaign(database_url: str, week: int, opened: datetime) -> tuple[int, int, int]:
    """A campaign of 4 + week items: all but one decided by a person, one of them revoked per two weeks."""
    items, decided = 4 + week, 3 + week
    revoked = 1 + week // 2
    campaign = f"rc-{week}"
    with session_scope(database_url) as session:
        session.add(
            ReviewCampaign(
                id=campaign,
                created_at=opened,
                remind_at=opened,
                escalate_at=opened,
                deadline_at=opened + timedelta(days=14),
                on_deadline="revoke",
            )
        )
        for n in range(items):
            decision = None if n >= decided else ("revoke" if n < revoked else "keep")
            session.add(
                ReviewItem(
                    campaign_id=campaign,
                    id=f"f{n}",
                    kind="outside_policy",
                    account_id=f"a{n}",
                    user_name=f"u{n}",
                    reviewer="lead",
                    created_at=opened,
                    decision=decision,
                    decided_by="lead" if decision else None,
                    decided_at=opened + timedelta(days=1) if decision else None,
                )
            )
        session.add(  # an auto-remediated item: not routed to a reviewer, not counted
            ReviewItem(
                campaign_id=campaign,
                id="auto",
                kind="terminated_active",
                account_id="x",
                user_name="x",
                reviewer="policy",
                auto=True,
                created_at=opened,
                decision="revoke",
                decided_by="policy:auto_remediate",
            )
        )
        session.commit()
    return items, decided, revoked
