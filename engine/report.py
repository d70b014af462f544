"""The figures HR and IT share, week by week (read-only): ``tenure report`` and the nightly review's artifact.

Each week is the seven days ending at ``now`` minus whole weeks, as many as fit after ``since`` (at least
one). Per week:

* **time to access** and **time to revoke** (p50, p90 in hours) are :func:`engine.kpi.compute_kpis` over that
  week — the KPI definitions live there, in one place, and are read here, never redefined;
* **review completion** and **revocation** rates: of the items routed to reviewers in campaigns opened that
  week, the share a person decided, and of those the share revoked (the KPI's completion rate, plus revokes);
* **failed runs**: runs (audit correlation ids) with at least one failed row, a refusal by the brake included;
  **brake trips**: ``sync.brake`` rows.

The HTML page (inline SVG charts) is drawn by :mod:`tenure.report`; :meth:`Report.markdown` is the same figures
as a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from engine.kpi import Durations, compute_kpis
from lifecycle.policy import Policy
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from models.domain import Employee
from models.review import ReviewCampaign, ReviewItem

__all__ = ["Week", "Report", "build_report"]

WEEK = timedelta(days=7)
MAX_WEEKS = 104


@dataclass(frozen=True)
class Week:
    """One week's figures; ``start`` is inclusive, ``end`` exclusive (both UTC)."""

    start: datetime
    end: datetime
    access: Durations
    revoke: Durations
    review_items: int
    review_decided: int
    review_revoked: int
    failed_runs: int
    brake_trips: int

    @property
    def completion_rate(self) -> float | None:
        return self.review_decided / self.review_items if self.review_items else None

    @property
    def revocation_rate(self) -> float | None:
        return self.review_revoked / self.review_decided if self.review_decided else None

    @property
    def label(self) -> str:
        return f"{self.start:%d %b}"


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    since: datetime
    weeks: list[Week]

    def markdown(self) -> str:
        """The figures as a markdown table (the nightly review run's artifact)."""

        def hours(value: float | None) -> str:
            return "–" if value is None else f"{value:g} h"

        def rate(value: float | None) -> str:
            return "–" if value is None else f"{100 * value:.0f} %"

        lines = [
            f"### Tenure report since {self.since:%Y-%m-%d} ({self.generated_at:%Y-%m-%d %H:%M} UTC)",
            "",
            "| week from | access p50 | access p90 | revoke p50 | revoke p90 | review completion "
            "| revocation | failed runs | brake trips |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for w in self.weeks:
            lines.append(
                f"| {w.start:%Y-%m-%d} | {hours(w.access.median_hours)} | {hours(w.access.p90_hours)} "
                f"| {hours(w.revoke.median_hours)} | {hours(w.revoke.p90_hours)} | {rate(w.completion_rate)} "
                f"| {rate(w.revocation_rate)} | {w.failed_runs} | {w.brake_trips} |"
            )
        return "\n".join(lines)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def build_report(
    *,
    database_url: str,
    policy: Policy,
    employees: Mapping[str, Employee] | None,
    since: datetime,
    now: datetime | None = None,
) -> Report:
    """The weekly figures from ``since`` to ``now`` (module docstring)."""
    now = now or datetime.now(UTC)
    count = min(MAX_WEEKS, max(1, int((now - since) / WEEK)))  # whole weeks from since (at least one)
    bounds = [(now - (i + 1) * WEEK, now - i * WEEK) for i in reversed(range(count))]
    first = bounds[0][0]
    with session_scope(database_url) as session:
        rows = session.exec(
            select(AuditEvent.occurred_at, AuditEvent.correlation_id, AuditEvent.action).where(
                col(AuditEvent.occurred_at) >= first,
                (AuditEvent.outcome == Outcome.FAILED.value) | (AuditEvent.action == "sync.brake"),
            )
        ).all()
        campaigns = {
            c.id: _aware(c.created_at)
            for c in session.exec(select(ReviewCampaign).where(col(ReviewCampaign.created_at) >= first)).all()
        }
        items = (
            session.exec(
                select(ReviewItem).where(
                    col(ReviewItem.campaign_id).in_(list(campaigns)), col(ReviewItem.auto).is_(False)
                )
            ).all()
            if campaigns
            else []
        )
    weeks = []
    for start, end in bounds:
        kpis = compute_kpis(
            database_url=database_url, policy=policy, employees=employees, now=end, window_days=7
        )
        in_week = [(at, run, action) for at, run, action in rows if start <= (_aware(at) or now) < end]
        routed = [i for i in items if start <= (campaigns[i.campaign_id] or now) < end]
        by_person = [i for i in routed if i.decision and not (i.decided_by or "").startswith("policy:")]
        weeks.append(
            Week(
                start=start,
                end=end,
                access=kpis.hire_to_access,
                revoke=kpis.termination_to_disable,
                review_items=len(routed),
                review_decided=len(by_person),
                review_revoked=sum(1 for i in by_person if i.decision == "revoke"),
                failed_runs=len({run or "?" for _, run, _ in in_week}),
                brake_trips=sum(1 for _, _, action in in_week if action == "sync.brake"),
            )
        )
    return Report(generated_at=now, since=since, weeks=weeks)
