"""Key figures from the audit trail and the review tables (read-only).

* **hire → working access** ("time to access"): from the start of the first working day — the hire date at
  ``policy.workday_start`` (default 09:00) in the employee's time zone, when the new hire sits down — to the
  first applied ``idp.user.enable``, or ``idp.user.create`` of an account created active (the ledger keeps
  the create action's ``active`` flag), at or after the pre-hire window opened. Negative or zero means access
  was ready when the day began (the goal; an account enabled at 00:00 local shows -9 h). Employees whose
  working day began in the window without such a row are counted as *waiting*.
* **termination → disabled** ("time to revoke"): from the termination instant (``termination_date`` at
  ``leaver.termination_time`` local, the moment access must end) to the first applied ``idp.user.disable``
  after the hire instant (earlier rows belong to an earlier tenure). Leavers past their instant without one
  are *waiting*.
* **review**: completion rate = items decided by a person / items routed to reviewers (auto-remediated
  items excluded; deadline-rule decisions count as not completed), decision age (created → decided), the
  oldest undecided item; orphan and dormant counts of the latest ``review.run``.
* **failed actions**: audit rows with outcome ``failed`` in the window, by action and by provisioning target.
* **targets**: the two lags above are the directory's; ``by_target`` gives them for every other target
  (``details.provisioning_target`` of the audit rows).

Only employees whose hire (or termination) instant falls in the last ``window_days`` are counted.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlmodel import col, select

from lifecycle.planner import timeline
from lifecycle.policy import Policy
from lifecycle.targets import in_target
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from models.domain import Employee
from models.ledger import LedgerEntry
from models.review import ReviewCampaign, ReviewItem

__all__ = ["Durations", "KPIReport", "compute_kpis"]

ACCESS_ACTIONS = ("idp.user.enable", "idp.user.create", "idp.user.disable")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Durations:
    """Lags in hours: how many were measured, median, 90th percentile, worst; ``waiting`` not yet done."""

    count: int = 0
    waiting: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None
    max_hours: float | None = None

    @classmethod
    def of(cls, lags: list[timedelta], waiting: int) -> Durations:
        if not lags:
            return cls(0, waiting)
        hours = sorted(lag.total_seconds() / 3600 for lag in lags)
        p90 = hours[min(len(hours) - 1, max(0, int(round(0.9 * len(hours))) - 1))]
        return cls(
            len(hours), waiting, round(statistics.median(hours), 2), round(p90, 2), round(hours[-1], 2)
        )

    def cell(self) -> str:
        if not self.count:
            return f"no data ({self.waiting} waiting)"
        return (
            f"median {self.median_hours} h, p90 {self.p90_hours} h, max {self.max_hours} h "
            f"(n={self.count}, {self.waiting} waiting)"
        )


@dataclass
class KPIReport:
    generated_at: datetime
    window_days: int
    workday_start: str = "09:00"  # "time to access" counts from this local time on the hire day
    hire_to_access: Durations = field(default_factory=Durations)
    termination_to_disable: Durations = field(default_factory=Durations)
    review_items: int = 0
    review_decided: int = 0
    review_completion_rate: float | None = None
    review_median_decision_days: float | None = None
    review_oldest_open_days: float | None = None
    open_campaigns: int = 0
    orphan_accounts: int | None = None
    dormant_accounts: int | None = None
    last_review_at: datetime | None = None
    failed_actions: int = 0
    failed_by_action: dict[str, int] = field(default_factory=dict)
    failed_by_target: dict[str, int] = field(default_factory=dict)
    # target (other than the directory) → {"hire_to_access": …, "termination_to_disable": …}
    by_target: dict[str, dict[str, Durations]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generated_at"] = self.generated_at.isoformat()
        data["last_review_at"] = self.last_review_at.isoformat() if self.last_review_at else None
        return data

    def markdown(self) -> str:
        def show(value: object, suffix: str = "") -> str:
            return "n/a" if value is None else f"{value}{suffix}"

        rate = None if self.review_completion_rate is None else round(100 * self.review_completion_rate, 1)
        rows = [
            (
                f"hire → working access (from {self.workday_start} local on the hire day)",
                self.hire_to_access.cell(),
            ),
            ("termination → disabled (from the termination instant)", self.termination_to_disable.cell()),
            ("review completion", f"{show(rate, ' %')} ({self.review_decided}/{self.review_items} items)"),
            ("review decision age (median)", show(self.review_median_decision_days, " days")),
            ("oldest undecided review item", show(self.review_oldest_open_days, " days")),
            ("open review campaigns", str(self.open_campaigns)),
            ("orphan accounts (last review)", show(self.orphan_accounts)),
            ("dormant accounts (last review)", show(self.dormant_accounts)),
            (
                "failed actions",
                f"{self.failed_actions}"
                + (
                    " (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.failed_by_action.items())) + ")"
                    if self.failed_by_action
                    else ""
                ),
            ),
        ]
        lines = [
            f"### Tenure KPIs, last {self.window_days} days ({self.generated_at:%Y-%m-%d %H:%M} UTC)",
            "",
            "| KPI | value |",
            "|---|---|",
        ]
        for target, lags in sorted(self.by_target.items()):
            rows += [(f"{target}: {what.replace('_', ' ')}", d.cell()) for what, d in lags.items()]
        lines += [f"| {name} | {value} |" for name, value in rows]
        return "\n".join(lines)


Times = dict[str, list[datetime]]  # employee id → instants


def _target_of(row: AuditEvent) -> str:
    return str((row.details or {}).get("provisioning_target") or "directory")


def _access_events(database_url: str) -> dict[str, tuple[Times, Times]]:
    """Per target: employee id → times of working access (enable / create of an active account), and of
    disables."""
    found: dict[str, tuple[Times, Times]] = {}
    with session_scope(database_url) as session:
        rows = session.exec(
            select(AuditEvent).where(
                col(AuditEvent.action).in_(ACCESS_ACTIONS), AuditEvent.outcome == Outcome.APPLIED.value
            )
        ).all()
        creates = {_create_key(r) for r in rows if r.action == "idp.user.create"}
        ledger = (
            {
                e.key: e
                for e in session.exec(select(LedgerEntry).where(col(LedgerEntry.key).in_(creates))).all()
            }
            if creates
            else {}
        )
    for row in rows:
        at = _aware(row.occurred_at)
        if not row.employee_id or at is None:
            continue
        access, disables = found.setdefault(_target_of(row), ({}, {}))
        if row.action == "idp.user.disable":
            disables.setdefault(row.employee_id, []).append(at)
            continue
        if row.action == "idp.user.create":
            entry = ledger.get(_create_key(row))
            if entry is None or not (entry.action or {}).get("attributes", {}).get("active", False):
                continue
        access.setdefault(row.employee_id, []).append(at)
    return found


def _create_key(row: AuditEvent) -> str:
    """The ledger key of the create an ``idp.user.create`` row records (:attr:`lifecycle.actions.Action.key`)."""
    target = _target_of(row)
    where = "" if target == "directory" else f"@{target}"
    return f"{row.employee_id}:create_account:{(row.details or {}).get('target')}{where}"


def _workday_start(employee: Employee, policy: Policy) -> datetime | None:
    """The hire date at ``policy.workday_start`` in the employee's time zone (UTC), or None without a date."""
    if employee.hire_date is None:
        return None
    hh, mm = (int(part) for part in policy.workday_start.split(":"))
    local = datetime.combine(employee.hire_date, time(hh, mm), tzinfo=policy.timezone_for(employee.location))
    return local.astimezone(UTC)


def _first_after(times: list[datetime] | None, start: datetime | None) -> datetime | None:
    candidates = [t for t in times or [] if start is None or t >= start]
    return min(candidates) if candidates else None


def compute_kpis(
    *,
    database_url: str,
    policy: Policy,
    employees: Mapping[str, Employee] | None = None,
    now: datetime | None = None,
    window_days: int = 30,
) -> KPIReport:
    """The KPIs (see the module docstring). Without ``employees`` the HR-date KPIs are left empty."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=window_days)
    report = KPIReport(generated_at=now, window_days=window_days, workday_start=policy.workday_start)
    if employees:
        events = _access_events(database_url)
        for target in ["directory", *sorted(policy.targets)]:
            access, disables = events.get(target, ({}, {}))
            wanted = policy.targets.get(target)
            people = [
                e for e in employees.values() if wanted is None or in_target(e, wanted)
            ]  # a target's joiners are those its account_when names
            hire, leave = _lags(people, policy, access, disables, since, now)
            if target == "directory":
                report.hire_to_access, report.termination_to_disable = hire, leave
            else:
                report.by_target[target] = {"hire_to_access": hire, "termination_to_disable": leave}
    _review_kpis(report, database_url, since, now)
    _audit_kpis(report, database_url, since)
    return report


def _lags(
    employees: list[Employee],
    policy: Policy,
    access: Times,
    disables: Times,
    since: datetime,
    now: datetime,
) -> tuple[Durations, Durations]:
    """Hire → working access and termination → disabled over ``employees`` (module docstring)."""
    hire_lags: list[timedelta] = []
    leave_lags: list[timedelta] = []
    hire_waiting = leave_waiting = 0
    for employee in employees:
        tl = timeline(employee, policy)
        workday = _workday_start(employee, policy)
        if workday is not None:
            got = _first_after(access.get(employee.employee_id), tl.create_at)
            # counted when the workday starts, or as soon as access came if that was earlier (a negative lag:
            # ready before the new hire sits down), so each hire falls in exactly one window
            at = workday if got is None else min(workday, got)
            if since <= at <= now:
                if got is None:
                    hire_waiting += 1
                else:
                    hire_lags.append(got - workday)
        if tl.disable_at is not None and since <= tl.disable_at <= now:
            done = _first_after(disables.get(employee.employee_id), tl.enable_at)
            if done is None:
                leave_waiting += 1
            else:
                leave_lags.append(done - tl.disable_at)
    return Durations.of(hire_lags, hire_waiting), Durations.of(leave_lags, leave_waiting)


def _review_kpis(report: KPIReport, database_url: str, since: datetime, now: datetime) -> None:
    with session_scope(database_url) as session:
        campaigns = session.exec(select(ReviewCampaign).where(ReviewCampaign.created_at >= since)).all()
        report.open_campaigns = len(
            session.exec(select(ReviewCampaign.id).where(ReviewCampaign.status == "open")).all()
        )
        ids = [c.id for c in campaigns]
        items = (
            session.exec(
                select(ReviewItem).where(
                    col(ReviewItem.campaign_id).in_(ids), col(ReviewItem.auto).is_(False)
                )
            ).all()
            if ids
            else []
        )
    by_person = [i for i in items if i.decision and not (i.decided_by or "").startswith("policy:")]
    report.review_items, report.review_decided = len(items), len(by_person)
    if items:
        report.review_completion_rate = round(len(by_person) / len(items), 4)
    ages = [
        ((_aware(i.decided_at) or now) - (_aware(i.created_at) or now)).total_seconds() / 86400
        for i in by_person
    ]
    if ages:
        report.review_median_decision_days = round(statistics.median(ages), 2)
    open_ages = [
        (now - (_aware(i.created_at) or now)).total_seconds() / 86400 for i in items if not i.decision
    ]
    if open_ages:
        report.review_oldest_open_days = round(max(open_ages), 2)


def _audit_kpis(report: KPIReport, database_url: str, since: datetime) -> None:
    with session_scope(database_url) as session:
        last_run = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "review.run")
            .order_by(col(AuditEvent.seq).desc())
            .limit(1)
        ).first()
        failed_rows = session.exec(
            select(AuditEvent).where(
                AuditEvent.outcome == Outcome.FAILED.value, AuditEvent.occurred_at >= since
            )
        ).all()
    failed = [r.action for r in failed_rows]
    report.failed_by_target = dict(
        Counter(_target_of(r) for r in failed_rows if (r.details or {}).get("provisioning_target"))
    )
    if last_run is not None:
        counts = (last_run.details or {}).get("counts", {})
        report.orphan_accounts = int(counts.get("orphan", 0))
        report.dormant_accounts = int(counts.get("dormant", 0))
        report.last_review_at = _aware(last_run.occurred_at)
    report.failed_by_action = dict(Counter(failed))
    report.failed_actions = len(failed)
