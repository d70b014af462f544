"""Review campaigns: storing one, a reviewer's decision on an item, and the auditors' evidence export.

A decision is an action through the one door (:class:`lifecycle.actions.RecordReviewDecision`): the applier
writes the item's decision, the grant it makes or withdraws (:class:`models.ledger.Grant` — a keep re-certifies
the membership until the next due date, a revoke withdraws it so that no later sync or reconcile grants it
again without a new approval) and its audit row in one transaction. A revoke's remediation (remove the
membership, disable the account) is applied through the same applier.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from connectors.protocols import IdentityProvider, Ticketing
from engine.applier import ActionResult, Applier, ApplyReport, Step
from engine.auditor import Auditor
from lifecycle.actions import DIRECTORY, Action, Plan, RecordReviewDecision
from lifecycle.policy import Policy
from lifecycle.recommend import Recommendation
from lifecycle.review import Finding, FindingKind, remediation
from models.audit import Outcome
from models.db import session_scope
from models.domain import Account
from models.ledger import aware
from models.review import (
    CampaignStatus,
    Decision,
    ReviewAssignment,
    ReviewCampaign,
    ReviewItem,
    add_campaign,
    set_actions,
)

__all__ = [
    "ReviewError",
    "EXPORT_FIELDS",
    "AUTO_REVIEWER",
    "DEADLINE_ACTOR",
    "campaign_reference",
    "new_applier",
    "account_for",
    "store_campaign",
    "decide",
    "export_rows",
]

AUTO_REVIEWER = "policy:auto_remediate"
BATCH = 250  # accounts (or reviewers' shares) per apply_many, as a sync batch
DEADLINE_ACTOR = "policy:deadline"

EXPORT_FIELDS = (
    "campaign",
    "item",
    "kind",
    "employee_id",
    "account_id",
    "user_name",
    "group",
    "target",
    "reviewer",
    "decision",
    "decided_by",
    "decided_at",
    "reason",
    "flagged",
    "action_taken",
    "action_outcome",
    "action_at",
    "created_at",
    "deadline_at",
    "detail",
    "recommendation",
    "evidence",
)

# the fields a campaign item keeps of its finding (kind is stored as its value)
FINDING_FIELDS: set[str] = {
    "id",
    "account_id",
    "user_name",
    "employee_id",
    "group",
    "revoke_group",
    "detail",
    "target",
}


class ReviewError(ValueError):
    """A decision or export that cannot be made (unknown campaign/item, closed campaign, changed mind)."""


def campaign_reference(campaign_id: str, reviewer: str) -> str:
    return f"tenure:review:{campaign_id}:{reviewer}"


def share(campaign_id: str, reviewer: str) -> str:
    """A reviewer's share of a campaign as the ledger names it: the plans of their ticket, its comments and its
    close."""
    return f"review:{campaign_id}:{reviewer}"


async def apply_batches(applier: Applier, items: Sequence[tuple[Plan, Account | None]]) -> list[ApplyReport]:
    """:meth:`engine.applier.Applier.apply_many` over ``items``, :data:`BATCH` at a time; the reports in the
    items' order (every plan in a batch must be a different employee's)."""
    reports: list[ApplyReport] = []
    for start in range(0, len(items), BATCH):
        reports += await applier.apply_many(items[start : start + BATCH])
    return reports


def recertified(item: ReviewItem, by: str) -> dict[str, Any]:
    """The ``review.recertify`` audit row's fields (all but the outcome) for a kept privileged membership."""
    return {
        "action": "review.recertify",
        "target_system": "tenure",
        "target_id": item.account_id,
        "employee_id": item.employee_id,
        "reason": f"privileged group kept in review {item.campaign_id} by {by}",
        "details": {"target": item.revoke_group, "campaign": item.campaign_id, "item": item.id},
    }


def new_applier(
    idp: IdentityProvider | None,
    ticketing: Ticketing | None,
    auditor: Auditor,
    *,
    dry_run: bool = False,
    step_factory: Any = None,
    targets: Mapping[str, IdentityProvider] | None = None,
) -> Applier:
    applier = Applier(idp=idp, targets=targets, ticketing=ticketing, auditor=auditor, dry_run=dry_run)
    if step_factory is not None:
        step: Step = step_factory(applier)
        applier.step = step
    return applier


def account_for(finding_or_item: Finding | ReviewItem) -> Account:
    """Enough of the account for the Applier (it acts by account id); saves a lookup per revocation."""
    group = finding_or_item.revoke_group
    return Account(
        id=finding_or_item.account_id,
        user_name=finding_or_item.user_name,
        employee_id=finding_or_item.employee_id or "",
        groups=frozenset({group} if group else ()),
    )


def finding_of(item: ReviewItem) -> Finding:
    """The finding a campaign item was made from (what a revocation remediates)."""
    return Finding(kind=FindingKind(item.kind), **{name: getattr(item, name) for name in FINDING_FIELDS})


def get_campaign(session: Session, campaign_id: str) -> ReviewCampaign:
    campaign = session.get(ReviewCampaign, campaign_id)
    if campaign is None:
        raise ReviewError(f"no review campaign {campaign_id!r}")
    return campaign


def save(database_url: str, row: ReviewCampaign | ReviewItem | ReviewAssignment) -> None:
    """Write back a campaign row read in an earlier (closed) session."""
    with session_scope(database_url) as session:
        session.merge(row)
        session.commit()


def store_campaign(
    *,
    database_url: str,
    campaign: ReviewCampaign,
    findings: Iterable[Finding],
    reviewers: dict[str, str],
    auto: dict[str, ActionResult],
    now: datetime,
    recommendations: Mapping[str, Recommendation] | None = None,
) -> None:
    """Store the campaign, its items (auto-remediated ones decided by the policy) and one assignment per
    reviewer. These are the review's work queue; the decisions on them go through the applier."""
    items: list[dict[str, Any]] = []
    for finding in findings:
        item = finding.model_dump(include=FINDING_FIELDS)
        item |= {
            "campaign_id": campaign.id,
            "kind": finding.kind.value,
            "reviewer": reviewers.get(finding.id, AUTO_REVIEWER),
            "created_at": now,
        }
        advice = (recommendations or {}).get(finding.id)
        if advice is not None:
            item["recommendation"], item["evidence"] = advice.advice, advice.evidence
        result = auto.get(finding.id)
        if result is not None:
            item |= {
                "auto": True,
                "decision": Decision.REVOKE,
                "decided_by": AUTO_REVIEWER,
                "decided_at": now,
                "reason": f"policy review.auto_remediate includes {finding.kind.value}",
                "action_taken": f"{result.action.kind.value} {result.action.subject}",
                "action_outcome": result.outcome.value,
                "action_at": now,
            }
        items.append(item)
    assignments = (
        {
            "campaign_id": campaign.id,
            "reviewer": reviewer,
            "reference": campaign_reference(campaign.id, reviewer),
        }
        for reviewer in sorted(set(reviewers.values()))
    )
    with session_scope(database_url) as session:
        add_campaign(session, campaign, items, assignments)
        session.commit()


def _load_item(database_url: str, campaign_id: str, item_id: str) -> tuple[ReviewCampaign, ReviewItem]:
    with session_scope(database_url) as session:
        campaign = get_campaign(session, campaign_id)
        item = session.get(ReviewItem, (campaign_id, item_id))
        if item is None:
            raise ReviewError(f"campaign {campaign_id} has no item {item_id!r}")
    return campaign, item


def _recertify_days(policy: Policy, group: str | None) -> int | None:
    for privileged in policy.privileged_groups:
        if privileged.name == group:
            return privileged.recertify_days
    return None


def decision_record(
    item: ReviewItem, decision: str, by: str, reason: str, now: datetime, policy: Policy, flagged: bool
) -> RecordReviewDecision:
    """The action recording ``decision`` on ``item`` (a keep of a privileged group re-certifies it for the
    group's ``recertify_days``)."""
    days = _recertify_days(policy, item.revoke_group)
    return RecordReviewDecision(
        employee_id=item.employee_id or f"account:{item.account_id}",
        reason=reason,
        campaign_id=item.campaign_id,
        item_id=item.id,
        decision="keep" if decision == Decision.KEEP else "revoke",
        decided_by=by,
        decided_at=now,
        group=item.revoke_group,
        account_id=item.account_id,
        flagged=flagged,
        recommended=item.recommendation,
        recertify_until=now + timedelta(days=days)
        if days is not None and decision == Decision.KEEP
        else None,
    )


async def decide(
    *,
    database_url: str,
    campaign_id: str,
    item_id: str,
    decision: str,
    by: str,
    reason: str = "",
    idp: IdentityProvider | None,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime | None = None,
    flagged: bool = False,
    allow_closed: bool = False,
    step_factory: Any = None,
    targets: Mapping[str, IdentityProvider] | None = None,
) -> ReviewItem:
    """Record a keep/revoke decision (module docstring); a revoke needs ``idp`` (and, for an item of another
    target, that target's connector in ``targets``).

    Repeating the same decision is a no-op, except that a revoke whose action failed is retried. A
    different decision on a decided item, or any decision in a closed campaign, raises ReviewError; so do an
    unknown campaign or item. Nothing is written then."""
    now = now or datetime.now(UTC)
    if decision not in (Decision.KEEP, Decision.REVOKE):
        raise ReviewError(f"decision must be keep or revoke, not {decision!r}")
    if not by.strip():
        raise ReviewError("a decision needs the name of who made it (--by)")
    campaign, item = _load_item(database_url, campaign_id, item_id)
    if campaign.status != CampaignStatus.OPEN and not allow_closed:
        raise ReviewError(f"campaign {campaign_id} is closed")
    if item.decision is not None:
        if item.decision != decision:
            raise ReviewError(f"item {item_id} was already decided {item.decision} by {item.decided_by}")
        if decision == Decision.KEEP or item.action_outcome == "applied":
            return item
    if decision == Decision.REVOKE and idp is None:
        raise ReviewError("revoking needs the identity provider")
    applier = new_applier(idp, ticketing, auditor, step_factory=step_factory, targets=targets)
    if item.decision is None:
        record = decision_record(item, decision, by, reason or f"{decision} by {by}", now, policy, flagged)
        report = await applier.apply(
            Plan(employee_id=record.employee_id, event="none", actions=[record]), None
        )
        if not report.ok:
            raise ReviewError(f"the decision could not be recorded: {report.failed[0].detail}")
        if decision == Decision.KEEP and item.employee_id and item.revoke_group in policy.privileged_names:
            applier.note(outcome=report.results[0].outcome, **recertified(item, by))
        _, item = _load_item(database_url, campaign_id, item_id)
    if decision == Decision.REVOKE:
        await revoke_many([item], applier, now)
    return item


async def revoke_many(items: list[ReviewItem], applier: Applier, now: datetime) -> dict[str, str]:
    """Each revoked item's remediation (:func:`remediate`, in batches), the action on the item and its
    ``review.revoke`` audit row; item id → the action's outcome. The items are updated in place too."""
    results = await remediate([finding_of(item) for item in items], applier)
    for item in items:
        action = results[item.id].action
        item.action_taken = f"{action.kind.value} {action.subject}"
        item.action_outcome, item.action_at = results[item.id].outcome.value, now
    with session_scope(applier.database_url) as session:
        set_actions(session, items)
        session.commit()
    applier.note_many(
        applier.auditor.event(
            action="review.revoke",
            target_system=applier.idp.source if applier.idp else "tenure",
            target_id=item.account_id,
            employee_id=item.employee_id,
            outcome=result.outcome,
            reason=result.detail or result.action.reason,
            details={
                "campaign": item.campaign_id,
                "item": item.id,
                "kind": item.kind,
                "action": result.action.kind.value,
                "target": result.action.subject,
            },
        )
        for item in items
        for result in (results[item.id],)
    )
    return {item.id: results[item.id].outcome.value for item in items}


async def remediate(findings: list[Finding], applier: Applier) -> dict[str, ActionResult]:
    """Apply the remediations, one plan per account (disables first), each action once: the directory's in
    batches (:meth:`engine.applier.Applier.apply_many`: a lock hold, a ledger read and a transaction per level
    for a batch, one write per group for its memberships), the other targets' one account at a time."""
    by_account: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        by_account[(finding.target, finding.account_id)].append(finding)
    rounds: list[list[tuple[Plan, Account]]] = []  # an employee's k-th directory account goes in round k
    seen: dict[str, int] = defaultdict(int)
    results: dict[str, ActionResult] = {}
    for account_findings in by_account.values():
        actions: dict[str, Action] = {}
        for finding in account_findings:
            action = remediation(finding)
            actions.setdefault(action.key, action)
        ordered = sorted(actions.values(), key=lambda a: a.kind.value != "disable_account")
        plan = Plan(employee_id=ordered[0].employee_id, event="none", actions=ordered)
        account = account_for(account_findings[0])
        where = account_findings[0].target
        if where == DIRECTORY:
            k = seen[plan.employee_id]
            seen[plan.employee_id] += 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append((plan, account))
            continue
        report = await applier.apply(plan, None, accounts={where: account})
        results |= _by_finding(account_findings, report)
    for plans in rounds:
        for (_, account), report in zip(plans, await apply_batches(applier, plans), strict=True):
            results |= _by_finding(by_account[(DIRECTORY, account.id)], report)
    return results


def _by_finding(findings: list[Finding], report: ApplyReport) -> dict[str, ActionResult]:
    """Each finding's remediation result in ``report``; a plan refused as a whole (its employee's lock not
    obtained) fails each of them with the report's error."""
    by_key = {r.action.key: r for r in report.results}
    results: dict[str, ActionResult] = {}
    for finding in findings:
        action = remediation(finding)
        results[finding.id] = by_key.get(action.key) or ActionResult(
            action, Outcome.FAILED, report.error or "not applied"
        )
    return results


def _iso(moment: datetime | None) -> str:
    moment = aware(moment)
    return moment.astimezone(UTC).isoformat() if moment else ""


def export_rows(database_url: str, campaign_id: str) -> list[dict[str, Any]]:
    """The campaign's evidence: one row per item (fields :data:`EXPORT_FIELDS`), in item order."""
    with session_scope(database_url) as session:
        campaign = get_campaign(session, campaign_id)
        items = session.exec(
            select(ReviewItem)
            .where(ReviewItem.campaign_id == campaign_id)
            .order_by(col(ReviewItem.auto).desc(), col(ReviewItem.reviewer), col(ReviewItem.id))
        ).all()
    return [
        {
            "campaign": campaign_id,
            "item": i.id,
            "kind": i.kind,
            "employee_id": i.employee_id or "",
            "account_id": i.account_id,
            "user_name": i.user_name,
            "group": i.group or "",
            "target": i.target,
            "reviewer": i.reviewer,
            "decision": i.decision or "",
            "decided_by": i.decided_by or "",
            "decided_at": _iso(i.decided_at),
            "reason": i.reason or "",
            "flagged": i.flagged,
            "action_taken": i.action_taken or "",
            "action_outcome": i.action_outcome or "",
            "action_at": _iso(i.action_at),
            "created_at": _iso(i.created_at),
            "deadline_at": _iso(campaign.deadline_at),
            "detail": i.detail,
            "recommendation": i.recommendation or "",
            "evidence": i.evidence or "",
        }
        for i in items
    ]
