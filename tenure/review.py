"""The access review engine: fetch (HRIS, IdP) → findings (pure) → auto-remediate or route to a campaign.

* :func:`run_review` reads the roster, every account (paged) and every group's members, computes the
  findings (:mod:`lifecycle.review`), applies the ``review.auto_remediate`` kinds at once through the same
  :class:`tenure.apply.Applier` as the lifecycle flows, and puts the rest in a :class:`ReviewCampaign`,
  one ticket per reviewer (reference ``tenure:review:<campaign>:<reviewer>``).
* :func:`decide` records a reviewer's keep/revoke; a revoke goes through the Applier. Keeping a
  privileged group re-certifies it (audit ``review.recertify``, read back by :func:`load_approvals`).
* :func:`process_deadlines` reminds, escalates (ticket comment + audit) and, at the deadline, applies
  ``on_deadline`` to undecided items (revoke → the Applier; keep_and_flag → kept, flagged) and closes.
* :func:`export_rows` is the evidence: one row per item with its decision and the action taken.

Audit actions: ``review.run``, ``review.finding``, ``review.campaign.create``, ``review.ticket``,
``review.decision``, ``review.recertify``, ``review.revoke``, ``review.remind``, ``review.escalate``,
``review.deadline``, ``review.campaign.close``. Audit rows and artifacts carry ids, kinds and groups;
user names appear only in tickets (as the lifecycle tickets do) and in the export.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from connectors.errors import ConnectorError, InvalidRecordError
from connectors.protocols import HRIS, IdentityProvider, Ticketing
from lifecycle.actions import Plan
from lifecycle.policy import Policy
from lifecycle.review import Finding, FindingKind, count_by_kind, find, remediation, route_reviewers
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from models.domain import Account, Employee, TicketRequest
from models.review import CampaignStatus, Decision, ReviewAssignment, ReviewCampaign, ReviewItem
from tenure.apply import ActionResult, Applier, Step
from tenure.auditor import Auditor

__all__ = [
    "ReviewError",
    "Inventory",
    "ReviewRun",
    "DeadlineReport",
    "EXPORT_FIELDS",
    "AUTO_REVIEWER",
    "DEADLINE_ACTOR",
    "collect_inventory",
    "load_approvals",
    "run_review",
    "decide",
    "process_deadlines",
    "export_rows",
    "campaign_reference",
]

AUTO_REVIEWER = "policy:auto_remediate"
DEADLINE_ACTOR = "policy:deadline"
TICKET_PURPOSE = "access-review"
APPROVAL_ACTIONS = ("approval.request", "review.recertify")
StepFactory = Callable[[Applier], Step]

EXPORT_FIELDS = (
    "campaign",
    "item",
    "kind",
    "employee_id",
    "account_id",
    "user_name",
    "group",
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
)


class ReviewError(ValueError):
    """A decision or export that cannot be made (unknown campaign/item, closed campaign, changed mind)."""


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every instant Tenure stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def campaign_reference(campaign_id: str, reviewer: str) -> str:
    return f"tenure:review:{campaign_id}:{reviewer}"


# the fields a campaign item keeps of its finding (kind is stored as its value)
_FINDING_FIELDS = frozenset(
    {"id", "account_id", "user_name", "employee_id", "group", "revoke_group", "detail"}
)


def _finding_of(item: ReviewItem) -> Finding:
    """The finding a campaign item was made from (what a revocation remediates)."""
    return Finding(kind=FindingKind(item.kind), **{name: getattr(item, name) for name in _FINDING_FIELDS})


def _get_campaign(session: Session, campaign_id: str) -> ReviewCampaign:
    campaign = session.get(ReviewCampaign, campaign_id)
    if campaign is None:
        raise ReviewError(f"no review campaign {campaign_id!r}")
    return campaign


def _merge(database_url: str, row: ReviewCampaign | ReviewItem | ReviewAssignment) -> None:
    """Write back a row read in an earlier (closed) session."""
    with session_scope(database_url) as session:
        session.merge(row)
        session.commit()


# ------------------------------------------------------------------------------------------------ fetch


@dataclass
class Inventory:
    """What the review looks at: the roster, every account with its memberships, unreadable HR rows."""

    employees: dict[str, Employee]
    accounts: list[Account]
    invalid_records: int = 0
    memberships: int = 0


async def collect_inventory(hris: HRIS, idp: IdentityProvider, *, page_size: int = 200) -> Inventory:
    """Stream the roster and the accounts (paged); memberships come from ``list_groups`` and replace what
    the user pages carried (group member lists are the provider's source of truth for membership)."""
    employees: dict[str, Employee] = {}
    invalid = 0
    async for record in hris.iter_employees():
        if isinstance(record, InvalidRecordError):
            invalid += 1
            continue
        employees[record.employee_id] = record
    accounts: list[Account] = []
    async for page in idp.iter_users(page_size=page_size):
        accounts.extend(page)
    groups = await idp.list_groups()
    by_account: dict[str, set[str]] = defaultdict(set)
    memberships = 0
    for group in groups:
        for member in group.member_ids:
            by_account[member].add(group.name)
            memberships += 1
    if groups:
        accounts = [a.model_copy(update={"groups": frozenset(by_account.get(a.id, ()))}) for a in accounts]
    else:
        memberships = sum(len(a.groups) for a in accounts)
    return Inventory(employees=employees, accounts=accounts, invalid_records=invalid, memberships=memberships)


def load_approvals(database_url: str) -> dict[str, dict[str, datetime]]:
    """Employee id → {privileged group → latest approval or re-certification}, from the audit trail
    (applied ``approval.request`` rows of the lifecycle flows, applied ``review.recertify`` rows)."""
    approvals: dict[str, dict[str, datetime]] = defaultdict(dict)
    with session_scope(database_url) as session:
        rows = session.exec(
            select(AuditEvent).where(
                col(AuditEvent.action).in_(APPROVAL_ACTIONS), AuditEvent.outcome == Outcome.APPLIED.value
            )
        ).all()
    for row in rows:
        group = (row.details or {}).get("target")
        at = _aware(row.occurred_at)
        if not row.employee_id or not group or at is None:
            continue
        held = approvals[row.employee_id]
        if group not in held or held[group] < at:
            held[group] = at
    return dict(approvals)


# ------------------------------------------------------------------------------------------------ run


@dataclass
class ReviewRun:
    """The outcome of one review run."""

    findings: list[Finding]
    auto: dict[str, ActionResult] = field(default_factory=dict)  # finding id → remediation result
    reviewers: dict[str, str] = field(default_factory=dict)  # finding id → reviewer (campaign items)
    campaign_id: str | None = None
    tickets: dict[str, str | None] = field(default_factory=dict)  # reviewer → ticket id (None: none/failed)
    accounts: int = 0
    memberships: int = 0
    invalid_records: int = 0
    dry_run: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return count_by_kind(self.findings)

    @property
    def failed(self) -> list[ActionResult]:
        return [r for r in self.auto.values() if r.outcome is Outcome.FAILED]

    def handling(self, finding: Finding) -> str:
        if finding.id in self.auto:
            return f"auto: {self.auto[finding.id].outcome.value}"
        return "campaign" if finding.id in self.reviewers else "dry run"

    def summary_rows(self) -> list[dict[str, str]]:
        """One row per finding for the table artifact: ids, kinds and groups only (no names, no emails)."""
        return [
            {
                "finding": f.id,
                "kind": f.kind.value,
                "employee_id": f.employee_id or "",
                "account_id": f.account_id,
                "group": f.group or "",
                "handling": self.handling(f),
            }
            for f in self.findings
        ]

    def markdown(self) -> str:
        lines = [
            f"### Access review {self.campaign_id or '(no campaign)'}",
            "",
            f"{self.accounts} accounts, {self.memberships} memberships, {len(self.findings)} findings, "
            f"{len(self.auto)} auto-remediated ({len(self.failed)} failed), "
            f"{len(self.reviewers)} for {len(set(self.reviewers.values()))} reviewer(s).",
            "",
            "| kind | findings |",
            "|---|---|",
        ]
        lines += [f"| {kind} | {n} |" for kind, n in self.counts.items()]
        return "\n".join(lines)


def _applier(
    idp: IdentityProvider,
    ticketing: Ticketing | None,
    auditor: Auditor,
    *,
    dry_run: bool = False,
    step_factory: StepFactory | None = None,
) -> Applier:
    applier = Applier(idp=idp, ticketing=ticketing, auditor=auditor, dry_run=dry_run)
    if step_factory is not None:
        applier.step = step_factory(applier)
    return applier


def _account_for(finding_or_item: Finding | ReviewItem) -> Account:
    """Enough of the account for the Applier (it acts by account id); saves a lookup per revocation."""
    group = finding_or_item.revoke_group
    return Account(
        id=finding_or_item.account_id,
        user_name=finding_or_item.user_name,
        employee_id=finding_or_item.employee_id or "",
        groups=frozenset({group} if group else ()),
    )


async def _remediate(findings: list[Finding], applier: Applier) -> dict[str, ActionResult]:
    """Apply the remediations, one plan per account (disables first), each action once."""
    by_account: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_account[finding.account_id].append(finding)
    results: dict[str, ActionResult] = {}
    for account_findings in by_account.values():
        actions = {}
        for finding in account_findings:
            action = remediation(finding)
            actions.setdefault(action.key, action)
        ordered = sorted(actions.values(), key=lambda a: a.kind.value != "disable_account")
        plan = Plan(employee_id=ordered[0].employee_id, event="none", actions=ordered)
        report = await applier.apply(plan, _account_for(account_findings[0]))
        by_key = {r.action.key: r for r in report.results}
        for finding in account_findings:
            results[finding.id] = by_key[remediation(finding).key]
    return results


async def run_review(
    *,
    hris: HRIS,
    idp: IdentityProvider,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime | None = None,
    dry_run: bool = False,
    step_factory: StepFactory | None = None,
) -> ReviewRun:
    """One access review run (see the module docstring). ``dry_run`` audits the auto-remediations as
    planned and creates no campaign, no tickets and no finding rows."""
    now = now or datetime.now(UTC)
    inventory = await collect_inventory(hris, idp)
    findings = find(
        inventory.employees, inventory.accounts, load_approvals(auditor.database_url), now, policy
    )
    run = ReviewRun(
        findings=findings,
        accounts=len(inventory.accounts),
        memberships=inventory.memberships,
        invalid_records=inventory.invalid_records,
        dry_run=dry_run,
    )
    auto_kinds = {FindingKind(k) for k in policy.review.auto_remediate}
    auto = [f for f in findings if f.kind in auto_kinds]
    manual = [f for f in findings if f.kind not in auto_kinds]
    applier = _applier(idp, ticketing, auditor, dry_run=dry_run, step_factory=step_factory)
    run.auto = await _remediate(auto, applier)
    if dry_run:
        return run
    campaign_id = f"rc-{now:%Y%m%d}-{uuid.uuid4().hex[:8]}" if findings else None
    run.campaign_id = campaign_id
    run.reviewers = route_reviewers(manual, inventory.employees, inventory.accounts, policy)
    auditor.record_many(
        auditor.event(
            action="review.finding",
            target_system="tenure",
            target_id=f.account_id,
            employee_id=f.employee_id,
            outcome=Outcome.APPLIED,
            reason=f.detail,
            details={
                "finding": f.id,
                "kind": f.kind.value,
                "group": f.group,
                "campaign": campaign_id,
                "handling": run.handling(f),
            },
        )
        for f in findings
    )
    if campaign_id is not None:
        deadline = _store_campaign(campaign_id, run, policy, auditor, now)
        run.tickets = await _open_tickets(campaign_id, run, ticketing, auditor, deadline)
    auditor.record(
        action="review.run",
        target_system="tenure",
        target_id=campaign_id,
        outcome=Outcome.APPLIED,
        reason=f"{len(findings)} findings, {len(auto)} auto-remediated, {len(manual)} for review",
        details={
            "campaign": campaign_id,
            "counts": run.counts,
            "accounts": run.accounts,
            "memberships": run.memberships,
            "invalid_records": run.invalid_records,
            "auto_failed": len(run.failed),
        },
    )
    return run


def _store_campaign(
    campaign_id: str, run: ReviewRun, policy: Policy, auditor: Auditor, now: datetime
) -> datetime:
    """Store the campaign, its items (auto-remediated ones decided) and assignments; returns the deadline."""
    review = policy.review
    manual = [f for f in run.findings if f.id in run.reviewers]
    campaign = ReviewCampaign(
        id=campaign_id,
        created_at=now,
        remind_at=now + timedelta(days=review.remind_after_days),
        escalate_at=now + timedelta(days=review.escalate_after_days),
        deadline_at=now + timedelta(days=review.deadline_days),
        on_deadline=review.on_deadline,
        correlation_id=auditor.correlation_id,
        status=CampaignStatus.OPEN if manual else CampaignStatus.CLOSED,
        closed_at=None if manual else now,
    )
    items = []
    for finding in run.findings:
        item = ReviewItem(
            campaign_id=campaign_id,
            kind=finding.kind.value,
            reviewer=run.reviewers.get(finding.id, AUTO_REVIEWER),
            created_at=now,
            **finding.model_dump(include=_FINDING_FIELDS),
        )
        result = run.auto.get(finding.id)
        if result is not None:
            item.auto = True
            item.decision, item.decided_by, item.decided_at = Decision.REVOKE, AUTO_REVIEWER, now
            item.reason = f"policy review.auto_remediate includes {finding.kind.value}"
            item.action_taken = f"{result.action.kind.value} {result.action.target}"
            item.action_outcome, item.action_at = result.outcome.value, now
        items.append(item)
    with session_scope(auditor.database_url) as session:
        session.add(campaign)
        session.flush()
        session.add_all(items)
        session.add_all(
            ReviewAssignment(
                campaign_id=campaign_id,
                reviewer=reviewer,
                reference=campaign_reference(campaign_id, reviewer),
            )
            for reviewer in sorted(set(run.reviewers.values()))
        )
        session.commit()
    auditor.record(
        action="review.campaign.create",
        target_system="tenure",
        target_id=campaign_id,
        outcome=Outcome.APPLIED,
        reason=f"{len(manual)} item(s) for {len(set(run.reviewers.values()))} "
        f"reviewer(s), deadline {campaign.deadline_at.isoformat()}",
        details={
            "campaign": campaign_id,
            "items": len(manual),
            "auto": len(run.auto),
            "deadline_at": campaign.deadline_at.isoformat(),
        },
    )
    return campaign.deadline_at


def _ticket_body(campaign_id: str, reviewer: str, items: Iterable[Finding], deadline: datetime) -> str:
    lines = [
        f"Access review {campaign_id}: please decide keep or revoke for each item by "
        f"{deadline:%Y-%m-%d %H:%M} UTC. Undecided items follow the policy at the deadline.",
        "",
    ]
    for f in items:
        lines.append(
            f"- {f.id} [{f.kind.value}] account {f.user_name}"
            + (f" group {f.group}" if f.group else "")
            + f": {f.detail}"
        )
    lines += [
        "",
        f"Decide: tenure review decide {campaign_id} ITEM keep|revoke --by {reviewer} --reason TEXT",
        "or in the Prefect UI: run the review-decide/tenure deployment with the same fields.",
    ]
    return "\n".join(lines)


async def _open_tickets(
    campaign_id: str, run: ReviewRun, ticketing: Ticketing | None, auditor: Auditor, deadline: datetime
) -> dict[str, str | None]:
    """One ticket per reviewer listing their items; idempotent by reference. Failures are audited."""
    per_reviewer: dict[str, list[Finding]] = defaultdict(list)
    for finding in run.findings:
        if finding.id in run.reviewers:
            per_reviewer[run.reviewers[finding.id]].append(finding)
    tickets: dict[str, str | None] = {}
    for reviewer, items in sorted(per_reviewer.items()):
        reference = campaign_reference(campaign_id, reviewer)
        if ticketing is None:
            tickets[reviewer] = None
            auditor.record(
                action="review.ticket",
                target_system="tenure",
                target_id=reference,
                outcome=Outcome.SKIPPED,
                reason="no ticketing system configured",
                details={"campaign": campaign_id, "reviewer": reviewer, "items": len(items)},
            )
            continue
        request = TicketRequest(
            reference=reference,
            purpose=TICKET_PURPOSE,
            title=f"Access review {campaign_id}: {len(items)} item(s) for {reviewer}",
            body=_ticket_body(campaign_id, reviewer, items, deadline),
        )
        try:
            ticket = await ticketing.create_ticket(request)
        except ConnectorError as exc:
            tickets[reviewer] = None
            auditor.record(
                action="review.ticket",
                target_system=ticketing.source,
                target_id=reference,
                outcome=Outcome.FAILED,
                reason=str(exc),
                details={"campaign": campaign_id, "reviewer": reviewer, "items": len(items)},
            )
            continue
        tickets[reviewer] = ticket.id
        with session_scope(auditor.database_url) as session:
            assignment = session.get(ReviewAssignment, (campaign_id, reviewer))
            if assignment is not None:
                assignment.ticket_id = ticket.id
                session.add(assignment)
                session.commit()
        auditor.record(
            action="review.ticket",
            target_system=ticketing.source,
            target_id=ticket.id,
            outcome=Outcome.APPLIED,
            reason=f"{len(items)} item(s)",
            details={"campaign": campaign_id, "reviewer": reviewer, "reference": reference},
        )
    return tickets


# ------------------------------------------------------------------------------------------------ decide


def _load_item(database_url: str, campaign_id: str, item_id: str) -> tuple[ReviewCampaign, ReviewItem]:
    with session_scope(database_url) as session:
        campaign = _get_campaign(session, campaign_id)
        item = session.get(ReviewItem, (campaign_id, item_id))
        if item is None:
            raise ReviewError(f"campaign {campaign_id} has no item {item_id!r}")
    return campaign, item


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
    step_factory: StepFactory | None = None,
) -> ReviewItem:
    """Record a keep/revoke decision; a revoke is applied through the Applier (``idp`` required).

    Repeating the same decision is a no-op, except that a revoke whose action failed is retried. A
    different decision on a decided item, or any decision in a closed campaign, raises ReviewError."""
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
        if decision == Decision.KEEP or item.action_outcome == Outcome.APPLIED.value:
            return item
    else:
        item.decision, item.decided_by, item.decided_at = decision, by, now
        item.reason, item.flagged = reason or None, flagged
        if decision == Decision.KEEP:
            item.action_taken, item.action_outcome, item.action_at = "none", None, None
        _merge(database_url, item)
        details = {
            "campaign": campaign_id,
            "item": item_id,
            "kind": item.kind,
            "group": item.group,
            "decision": decision,
            "reviewer": item.reviewer,
            "by": by,
            "flagged": flagged,
        }
        auditor.record(
            action="review.decision",
            target_system="tenure",
            target_id=item.account_id,
            employee_id=item.employee_id,
            outcome=Outcome.APPLIED,
            reason=reason or f"{decision} by {by}",
            details=details,
        )
        if decision == Decision.KEEP and item.employee_id and item.revoke_group in policy.privileged_names:
            auditor.record(
                action="review.recertify",
                target_system="tenure",
                target_id=item.account_id,
                employee_id=item.employee_id,
                outcome=Outcome.APPLIED,
                reason=f"privileged group kept in review {campaign_id} by {by}",
                details={"target": item.revoke_group, "campaign": campaign_id, "item": item_id},
            )
    if decision == Decision.REVOKE:
        if idp is None:
            raise ReviewError("revoking needs the identity provider")
        await _revoke(item, idp, ticketing, auditor, now, step_factory)
    return item


async def _revoke(
    item: ReviewItem,
    idp: IdentityProvider,
    ticketing: Ticketing | None,
    auditor: Auditor,
    now: datetime,
    step_factory: StepFactory | None,
) -> None:
    action = remediation(_finding_of(item))
    applier = _applier(idp, ticketing, auditor, step_factory=step_factory)
    report = await applier.apply(
        Plan(employee_id=action.employee_id, event="none", actions=[action]), _account_for(item)
    )
    result = report.results[0]
    item.action_taken = f"{action.kind.value} {action.target}"
    item.action_outcome, item.action_at = result.outcome.value, now
    _merge(auditor.database_url, item)
    auditor.record(
        action="review.revoke",
        target_system=idp.source,
        target_id=item.account_id,
        employee_id=item.employee_id,
        outcome=result.outcome,
        reason=result.detail or action.reason,
        details={
            "campaign": item.campaign_id,
            "item": item.id,
            "kind": item.kind,
            "action": action.kind.value,
            "target": action.target,
        },
    )


# ------------------------------------------------------------------------------------------------ deadlines


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
    ticketing: Ticketing | None, assignment: ReviewAssignment, text: str
) -> tuple[Outcome, str]:
    if ticketing is None or not assignment.ticket_id:
        return Outcome.SKIPPED, "no ticket to comment on"
    try:
        await ticketing.add_comment(assignment.ticket_id, text)
    except ConnectorError as exc:
        return Outcome.FAILED, str(exc)
    return Outcome.APPLIED, text


async def process_deadlines(
    *,
    database_url: str,
    idp: IdentityProvider | None,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime | None = None,
    step_factory: StepFactory | None = None,
) -> DeadlineReport:
    """Remind, escalate and settle every open campaign as its dates come (each step once, audited)."""
    now = now or datetime.now(UTC)
    report = DeadlineReport()
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
        deadline = _aware(campaign.deadline_at)
        assert deadline is not None
        for assignment in assignments:
            pending = open_by_reviewer.get(assignment.reviewer, 0)
            if not pending or now >= deadline:
                continue
            await _remind_or_escalate(campaign, assignment, pending, ticketing, policy, auditor, now, report)
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
            )
            auditor.record(
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
        await _close(campaign, assignments, ticketing, auditor, now)
        report.closed.append(campaign.id)
    return report


async def _remind_or_escalate(
    campaign: ReviewCampaign,
    assignment: ReviewAssignment,
    pending: int,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime,
    report: DeadlineReport,
) -> None:
    escalate_at, remind_at = _aware(campaign.escalate_at), _aware(campaign.remind_at)
    assert escalate_at is not None and remind_at is not None
    deadline = f"{_aware(campaign.deadline_at):%Y-%m-%d %H:%M} UTC"
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
    outcome, detail = await _comment(ticketing, assignment, text)
    auditor.record(
        action=action,
        target_system=ticketing.source if ticketing else "tenure",
        target_id=assignment.ticket_id or assignment.reference,
        outcome=outcome,
        reason=detail,
        details=details,
    )
    if escalate:
        assignment.escalated_at = now
    assignment.reminded_at = assignment.reminded_at or now
    done.append((campaign.id, assignment.reviewer))
    _merge(auditor.database_url, assignment)


async def _close(
    campaign: ReviewCampaign,
    assignments: Iterable[ReviewAssignment],
    ticketing: Ticketing | None,
    auditor: Auditor,
    now: datetime,
) -> None:
    campaign.status, campaign.closed_at = CampaignStatus.CLOSED, now
    _merge(auditor.database_url, campaign)
    for assignment in assignments:
        if ticketing is not None and assignment.ticket_id:
            try:
                await ticketing.close_ticket(assignment.ticket_id)
            except ConnectorError as exc:
                auditor.record(
                    action="review.ticket.close",
                    target_system=ticketing.source,
                    target_id=assignment.ticket_id,
                    outcome=Outcome.FAILED,
                    reason=str(exc),
                    details={"campaign": campaign.id, "reviewer": assignment.reviewer},
                )
    auditor.record(
        action="review.campaign.close",
        target_system="tenure",
        target_id=campaign.id,
        outcome=Outcome.APPLIED,
        reason="deadline reached",
        details={"campaign": campaign.id},
    )


# ------------------------------------------------------------------------------------------------ export


def _iso(moment: datetime | None) -> str:
    moment = _aware(moment)
    return moment.astimezone(UTC).isoformat() if moment else ""


def export_rows(database_url: str, campaign_id: str) -> list[dict[str, Any]]:
    """The campaign's evidence: one row per item (fields :data:`EXPORT_FIELDS`), in item order."""
    with session_scope(database_url) as session:
        campaign = _get_campaign(session, campaign_id)
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
        }
        for i in items
    ]
