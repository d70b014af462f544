"""Review deadlines: remind, escalate and, at the deadline, settle every open campaign (each step once).

Reminders and escalations are comments on the reviewer's ticket, closing the campaign closes its tickets — all
through the one door (:class:`engine.applier.Applier`); undecided items at the deadline get the policy's
``on_deadline`` decision (revoke → the applier; keep_and_flag → kept, flagged), recorded as
:func:`engine.review.campaign.decide` records one. Each reviewer's comments and tickets are the plans of their
share of the campaign (``review:<campaign>:<reviewer>``), applied in batches like the decisions.
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
from engine.review.campaign import (
    DEADLINE_ACTOR,
    apply_batches,
    decision_record,
    new_applier,
    recertified,
    revoke_many,
    save,
    share,
)
from lifecycle.actions import Action, CloseTicket, CommentTicket, Plan, RecordReviewDecision
from lifecycle.policy import Policy
from models.audit import Outcome
from models.db import session_scope
from models.ledger import aware
from models.review import (
    CampaignStatus,
    Decision,
    ReviewAssignment,
    ReviewCampaign,
    ReviewItem,
    mark_assignments,
)

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
        deadline = aware(campaign.deadline_at)
        assert deadline is not None
        if now < deadline:
            pending: dict[str, int] = defaultdict(int)
            for item in undecided:
                pending[item.reviewer] += 1
            due = [a for a in assignments if pending.get(a.reviewer)]
            await _remind_or_escalate(campaign, due, pending, applier, policy, now, report)
            continue
        await _settle(campaign, list(undecided), applier, policy, now, report)
        await _close(campaign, assignments, applier, now)
        report.closed.append(campaign.id)
    return report


async def _remind_or_escalate(
    campaign: ReviewCampaign,
    assignments: Iterable[ReviewAssignment],
    pending: Mapping[str, int],
    applier: Applier,
    policy: Policy,
    now: datetime,
    report: DeadlineReport,
) -> None:
    """Each reviewer with items still open is reminded once (``remind_at``), then escalated once
    (``escalate_at``): a comment on their ticket, an audit row, a mark on their assignment. The comments go in
    batches (a campaign of a million accounts has one reviewer per manager)."""
    escalate_at, remind_at = aware(campaign.escalate_at), aware(campaign.remind_at)
    assert escalate_at is not None and remind_at is not None
    deadline = f"{aware(campaign.deadline_at):%Y-%m-%d %H:%M} UTC"
    fallback = policy.review.fallback_reviewer
    steps: list[tuple[ReviewAssignment, str, str, dict[str, Any]]] = []  # (assignment, action, text, details)
    for assignment in assignments:
        count = pending[assignment.reviewer]
        details: dict[str, Any] = {"campaign": campaign.id, "reviewer": assignment.reviewer, "pending": count}
        if now >= escalate_at and assignment.escalated_at is None:
            details["escalated_to"] = fallback
            text = (
                f"Escalation: {count} item(s) of access review {campaign.id} are still undecided by "
                f"{assignment.reviewer}; escalated to {fallback}. At {deadline} they follow on_deadline="
                f"{campaign.on_deadline}."
            )
            steps.append((assignment, "review.escalate", text, details))
        elif now >= remind_at and assignment.reminded_at is None:
            text = (
                f"Reminder: {count} item(s) of access review {campaign.id} await your decision by {deadline}."
            )
            steps.append((assignment, "review.remind", text, details))
    if not steps:
        return
    said = await _comments(campaign.id, steps, applier)
    applier.note_many(
        applier.auditor.event(
            action=action,
            target_system=applier.ticketing.source if applier.ticketing else "tenure",
            target_id=assignment.ticket_id or assignment.reference,
            outcome=said[assignment.reviewer][0],
            reason=said[assignment.reviewer][1],
            details=details,
        )
        for assignment, action, _, details in steps
    )
    marks: dict[str, tuple[datetime | None, datetime | None]] = {}
    for assignment, action, _, _ in steps:
        escalated = now if action == "review.escalate" else assignment.escalated_at
        marks[assignment.reviewer] = (aware(assignment.reminded_at) or now, aware(escalated))
        (report.escalated if action == "review.escalate" else report.reminded).append(
            (campaign.id, assignment.reviewer)
        )
    with session_scope(applier.database_url) as session:
        mark_assignments(session, campaign.id, marks)
        session.commit()


async def _comments(
    campaign_id: str, steps: list[tuple[ReviewAssignment, str, str, dict[str, Any]]], applier: Applier
) -> dict[str, tuple[Outcome, str]]:
    """Reviewer → how the comment on their ticket went (once per purpose, through the one door, in batches);
    no ticket to comment on: skipped."""
    said: dict[str, tuple[Outcome, str]] = {}
    plans: list[tuple[Plan, None]] = []
    commented: list[tuple[str, str]] = []  # (reviewer, text), in the plans' order
    for assignment, action, text, _ in steps:
        if applier.ticketing is None or not assignment.ticket_id:
            said[assignment.reviewer] = (Outcome.SKIPPED, "no ticket to comment on")
            continue
        comment = CommentTicket(
            employee_id=share(campaign_id, assignment.reviewer),
            reason=f"access review {campaign_id}: {action.removeprefix('review.')}",
            ticket_id=assignment.ticket_id,
            purpose=action.removeprefix("review."),
            text=text,
        )
        plans.append((Plan(employee_id=comment.employee_id, event="none", actions=[comment]), None))
        commented.append((assignment.reviewer, text))
    for (reviewer, text), done in zip(commented, await apply_batches(applier, plans), strict=True):
        result = done.results[0] if done.results else None
        if result is None:
            said[reviewer] = (Outcome.FAILED, done.error or "not applied")
        elif result.outcome is Outcome.APPLIED:
            said[reviewer] = (Outcome.APPLIED, text)
        else:
            said[reviewer] = (result.outcome, result.detail)
    return said


async def _settle(
    campaign: ReviewCampaign,
    undecided: list[ReviewItem],
    applier: Applier,
    policy: Policy,
    now: datetime,
    report: DeadlineReport,
) -> None:
    """The policy's ``on_deadline`` decision on every undecided item, as :func:`engine.review.campaign.decide`
    records one (the decision and its grant through the one door, a revoke's remediation applied, the item's
    action and the audit rows), in batches; an item whose decision could not be recorded is reported failed."""
    keep = campaign.on_deadline == "keep_and_flag"
    decision = Decision.KEEP if keep else Decision.REVOKE
    why = f"no decision by the deadline; policy on_deadline={campaign.on_deadline}"
    by_employee: dict[str, list[Action]] = defaultdict(list)
    for item in undecided:
        record = decision_record(item, decision, DEADLINE_ACTOR, why, now, policy, flagged=keep)
        by_employee[record.employee_id].append(record)
    plans = [(Plan(employee_id=e, event="none", actions=records), None) for e, records in by_employee.items()]
    recorded = {
        r.action.item_id
        for done in await apply_batches(applier, plans)
        for r in done.results
        if isinstance(r.action, RecordReviewDecision) and r.outcome is not Outcome.FAILED
    }
    settled = [item for item in undecided if item.id in recorded]
    outcomes = {item.id: "failed" for item in undecided if item.id not in recorded}
    if keep:
        applier.note_many(
            applier.auditor.event(outcome=Outcome.APPLIED, **recertified(item, DEADLINE_ACTOR))
            for item in settled
            if item.employee_id and item.revoke_group in policy.privileged_names
        )
        outcomes |= {item.id: Decision.KEEP for item in settled}
    else:
        outcomes |= await revoke_many(settled, applier, now)
    applier.note_many(
        applier.auditor.event(
            action="review.deadline",
            target_system="tenure",
            target_id=item.account_id,
            employee_id=item.employee_id,
            outcome=Outcome.APPLIED,
            reason=f"deadline passed: {decision}" + (" (flagged)" if keep else ""),
            details={
                "campaign": campaign.id,
                "item": item.id,
                "decision": decision,
                "action_outcome": None if keep else outcomes[item.id],
            },
        )
        for item in settled
    )
    report.deadline_items += [(campaign.id, item.id, outcomes[item.id]) for item in undecided]


async def _close(
    campaign: ReviewCampaign, assignments: Iterable[ReviewAssignment], applier: Applier, now: datetime
) -> None:
    campaign.status, campaign.closed_at = CampaignStatus.CLOSED, now
    save(applier.database_url, campaign)
    closes = [
        Plan(
            employee_id=share(campaign.id, assignment.reviewer),
            event="none",
            actions=[
                CloseTicket(
                    employee_id=share(campaign.id, assignment.reviewer),
                    reason=f"access review {campaign.id} closed at its deadline",
                    ticket_id=assignment.ticket_id,
                )
            ],
        )
        for assignment in assignments
        if assignment.ticket_id
    ]
    if applier.ticketing is not None:
        await apply_batches(applier, [(plan, None) for plan in closes])
    applier.note(
        action="review.campaign.close",
        target_system="tenure",
        target_id=campaign.id,
        outcome=Outcome.APPLIED,
        reason="deadline reached",
        details={"campaign": campaign.id},
    )
