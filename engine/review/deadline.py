"""Review deadlines: remind, escalate and, at the deadline, settle every open campaign (each step once).

Reminders and escalations are comments on the reviewer's ticket, closing the campaign closes its tickets — all
through the one door (:class:`engine.applier.Applier`); undecided items at the deadline get the policy's
``on_deadline`` decision (revoke → the applier; keep_and_flag → kept, flagged) via
:func:`engine.review.campaign.decide`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from connectors.protocols import IdentityProvider, Ticketing
from engine.applier import Applier, Step
from engine.auditor import Auditor
from engine.review.campaign import DEADLINE_ACTOR, decide, new_applier, save
from lifecycle.actions import CloseTicket, CommentTicket, Plan
from lifecycle.policy import Policy
from models.audit import Outcome
from models.db import session_scope
from models.ledger import aware
from models.review import CampaignStatus, Decision, ReviewAssignment, ReviewCampaign, ReviewItem

__all__ = ["DeadlineReport", "process_deadlines"]


@dataclass
class DeadlineReport:
    reminded: list[tuple[str, str]] = field(default_factory=list)  # (campaign, reviewer)
    escalated: list[tuple[str, str]] = field(default_factory=list)
    deadline_items: list[tuple[str, str, str]] = field(default_factory=list)  # (campaign, item, outcome)
    closed: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return (
            f"### Review deadlines\n\n{len(self.reminded)} reminder(s), {len(self.escalated)} escalation(s), "
            f"{len(self.deadline_items)} item(s) settled by the deadline rule, "
            f"{len(self.closed)} campaign(s) closed: {', '.join(self.closed) or '-'}"
        )


async def _comment(
    applier: Applier, assignment: ReviewAssignment, purpose: str, text: str
) -> tuple[Outcome, str]:
    """Comment on the reviewer's ticket through the one door (once per purpose); none to comment on: skipped."""
    if applier.ticketing is None or not assignment.ticket_id:
        return Outcome.SKIPPED, "no ticket to comment on"
    comment = CommentTicket(
        employee_id=f"review:{assignment.campaign_id}",
        reason=f"access review {assignment.campaign_id}: {purpose}",
        ticket_id=assignment.ticket_id,
        purpose=purpose,
        text=text,
    )
    report = await applier.apply(Plan(employee_id=comment.employee_id, event="none", actions=[comment]), None)
    result = report.results[0]
    return result.outcome, text if result.outcome is Outcome.APPLIED else result.detail


async def process_deadlines(
    *,
    database_url: str,
    idp: IdentityProvider | None,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime | None = None,
    step_factory: Callable[[Applier], Step] | None = None,
    targets: Mapping[str, IdentityProvider] | None = None,
) -> DeadlineReport:
    """Remind, escalate and settle every open campaign as its dates come (each step once, audited).
    ``targets``: the other provisioning targets' connectors (revoking their items)."""
    now = now or datetime.now(UTC)
    report = DeadlineReport()
    applier = new_applier(idp, ticketing, auditor, step_factory=step_factory, targets=targets)
    with session_scope(database_url) as session:
        campaigns = session.exec(
            select(ReviewCampaign).where(ReviewCampaign.status == CampaignStatus.OPEN)
        ).all()
    for campaign in campaigns:
        with session_scope(database_url) as session:
            undecided = session.exec(
                select(ReviewItem).where(
                    ReviewItem.campaign_id == campaign.id, col(ReviewItem.decision).is_(None)
                )
            ).all()
            assignments = session.exec(
                select(ReviewAssignment).where(ReviewAssignment.campaign_id == campaign.id)
            ).all()
        open_by_reviewer: dict[str, int] = defaultdict(int)
        for item in undecided:
            open_by_reviewer[item.reviewer] += 1
        deadline = aware(campaign.deadline_at)
        assert deadline is not None
        for assignment in assignments:
            pending = open_by_reviewer.get(assignment.reviewer, 0)
            if not pending or now >= deadline:
                continue
            await _remind_or_escalate(campaign, assignment, pending, applier, policy, now, report)
        if now < deadline:
            continue
        for item in undecided:
            keep = campaign.on_deadline == "keep_and_flag"
            settled = await decide(
                database_url=database_url,
                campaign_id=campaign.id,
                item_id=item.id,
                decision=Decision.KEEP if keep else Decision.REVOKE,
                by=DEADLINE_ACTOR,
                reason=f"no decision by the deadline; policy on_deadline={campaign.on_deadline}",
                idp=idp,
                ticketing=ticketing,
                policy=policy,
                auditor=auditor,
                now=now,
                flagged=keep,
                step_factory=step_factory,
                targets=targets,
            )
            applier.note(
                action="review.deadline",
                target_system="tenure",
                target_id=item.account_id,
                employee_id=item.employee_id,
                outcome=Outcome.APPLIED,
                reason=f"deadline passed: {settled.decision}" + (" (flagged)" if keep else ""),
                details={
                    "campaign": campaign.id,
                    "item": item.id,
                    "decision": settled.decision,
                    "action_outcome": settled.action_outcome,
                },
            )
            report.deadline_items.append(
                (campaign.id, item.id, settled.action_outcome or settled.decision or "")
            )
        await _close(campaign, assignments, applier, now)
        report.closed.append(campaign.id)
    return report


async def _remind_or_escalate(
    campaign: ReviewCampaign,
    assignment: ReviewAssignment,
    pending: int,
    applier: Applier,
    policy: Policy,
    now: datetime,
    report: DeadlineReport,
) -> None:
    escalate_at, remind_at = aware(campaign.escalate_at), aware(campaign.remind_at)
    assert escalate_at is not None and remind_at is not None
    deadline = f"{aware(campaign.deadline_at):%Y-%m-%d %H:%M} UTC"
    details: dict[str, Any] = {"campaign": campaign.id, "reviewer": assignment.reviewer, "pending": pending}
    escalate = now >= escalate_at and assignment.escalated_at is None
    if escalate:
        fallback = policy.review.fallback_reviewer
        action, done = "review.escalate", report.escalated
        details["escalated_to"] = fallback
        text = (
            f"Escalation: {pending} item(s) of access review {campaign.id} are still undecided by "
            f"{assignment.reviewer}; escalated to {fallback}. At {deadline} they follow on_deadline="
            f"{campaign.on_deadline}."
        )
    elif now >= remind_at and assignment.reminded_at is None:
        action, done = "review.remind", report.reminded
        text = (
            f"Reminder: {pending} item(s) of access review {campaign.id} await your decision by {deadline}."
        )
    else:
        return
    outcome, detail = await _comment(applier, assignment, action.removeprefix("review."), text)
    applier.note(
        action=action,
        target_system=applier.ticketing.source if applier.ticketing else "tenure",
        target_id=assignment.ticket_id or assignment.reference,
        outcome=outcome,
        reason=detail,
        details=details,
    )
    if escalate:
        assignment.escalated_at = now
    assignment.reminded_at = assignment.reminded_at or now
    done.append((campaign.id, assignment.reviewer))
    save(applier.database_url, assignment)


async def _close(
    campaign: ReviewCampaign, assignments: Iterable[ReviewAssignment], applier: Applier, now: datetime
) -> None:
    campaign.status, campaign.closed_at = CampaignStatus.CLOSED, now
    save(applier.database_url, campaign)
    closes = [
        CloseTicket(
            employee_id=f"review:{campaign.id}",
            reason=f"access review {campaign.id} closed at its deadline",
            ticket_id=assignment.ticket_id,
        )
        for assignment in assignments
        if assignment.ticket_id
    ]
    if applier.ticketing is not None and closes:
        await applier.apply(Plan(employee_id=f"review:{campaign.id}", event="none", actions=closes), None)
    applier.note(
        action="review.campaign.close",
        target_system="tenure",
        target_id=campaign.id,
        outcome=Outcome.APPLIED,
        reason="deadline reached",
        details={"campaign": campaign.id},
    )
