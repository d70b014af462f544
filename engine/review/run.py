"""Running an access review: fetch (HRIS, IdP) → findings (pure, :mod:`lifecycle.review`) → auto-remediate
or route to a campaign.

:func:`run_review` reads the roster, every account (paged) and every group's members, computes the findings
against the ledger's grants (:func:`load_approvals`), applies the ``review.auto_remediate`` kinds at once through
the applier, and puts the rest in a campaign (:mod:`engine.review.campaign`), one ticket per reviewer (reference
``tenure:review:<campaign>:<reviewer>``), opened through the applier too. Audit rows and artifacts carry ids,
kinds and groups; user names appear only in tickets (as the lifecycle tickets do) and in the export.
"""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import add
from typing import TypeVar

from connectors.errors import InvalidRecordError
from connectors.protocols import HRIS, IdentityProvider, Ticketing
from engine.applier import ActionResult, Applier, Step
from engine.auditor import Auditor
from engine.review.campaign import (
    account_for,
    apply_batches,
    campaign_reference,
    new_applier,
    remediate,
    share,
    store_campaign,
)
from lifecycle.actions import OpenTicket, Plan
from lifecycle.correlation import correlate
from lifecycle.policy import Policy
from lifecycle.recommend import Peers, Provenance, Recommendation, recommend_finding
from lifecycle.review import (
    Finding,
    FindingKind,
    count_by_kind,
    find,
    review_groups,
    route_reviewers,
)
from lifecycle.targets import target_policy
from models.audit import Outcome
from models.compact import CompactAccount, CompactEmployee
from models.db import session_scope
from models.domain import Account, TicketRequest
from models.ledger import applied_targets, grants_by_employee
from models.review import CampaignStatus, ReviewCampaign, set_ticket_ids

__all__ = [
    "TICKET_PURPOSE",
    "Inventory",
    "ReviewRun",
    "collect_inventory",
    "collector_paused",
    "load_approvals",
    "run_review",
]

TICKET_PURPOSE = "access-review"
FINDING_ROWS = 10_000  # review.finding audit rows per transaction

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ fetch


@dataclass
class Inventory:
    """What the review looks at: the roster, every account with its memberships (of the groups the review
    judges, in ``run_review``), unreadable HR rows, and how many memberships there are in all. Held compactly
    (:mod:`models.compact`): at a million accounts the validated models alone would take gigabytes."""

    employees: dict[str, CompactEmployee]
    accounts: list[CompactAccount]
    invalid_records: int = 0
    memberships: int = 0
    group_ids: dict[str, str] = field(default_factory=dict)  # the directory's groups, name → id

    def __repr__(self) -> str:
        """Counts only, no names: at scale the full repr is gigabytes of text (Python 3.11's ``asyncio.run``
        formats the repr of the task that returns an inventory, result included)."""
        return (
            f"Inventory({len(self.employees)} employees, {len(self.accounts)} accounts, "
            f"{self.memberships} memberships, {self.invalid_records} invalid records)"
        )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """CPython's cycle collector paused while the inventory is built and analysed, restored as it was after.

    The inventory is millions of acyclic records kept to the end, the findings hundreds of thousands more: as
    the heap grows the collector traverses them again and again without finding garbage (at 1,000,000
    accounts ~15 s, a quarter of the review's CPU at CPython's default thresholds, bench/RESULTS.md (o)).
    Reference counting still frees everything that is not a cycle; the few cycles a connector leaves per
    request (~70 objects per page read, measured on the SCIM connector) wait for the collector's next full
    pass. On the way out, what was allocated meanwhile joins the oldest generation (``gc.freeze`` then
    ``gc.unfreeze``, both O(1)) rather than the youngest, which would make the first allocation after the
    pause traverse all of it at once; not when something else froze objects, which ``unfreeze`` would thaw.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


async def collect_inventory(
    hris: HRIS, idp: IdentityProvider, *, page_size: int = 200, judged: Collection[str] | None = None
) -> Inventory:
    """Stream the roster and the accounts (paged) into compact records; memberships come from ``list_groups``
    and replace what the user pages carried (group member lists are the provider's source of truth for
    membership). ``judged``: the only groups whose memberships are held (``run_review`` passes
    :func:`lifecycle.review.review_groups`); every membership is counted all the same."""
    employees: dict[str, CompactEmployee] = {}
    invalid = 0
    async for record in hris.iter_employees():
        if isinstance(record, InvalidRecordError):
            invalid += 1
            continue
        employees[record.employee_id] = CompactEmployee.of(record)

    def compact(account: Account, groups: tuple[str, ...] | None) -> CompactAccount:
        employee = employees.get(account.employee_id)  # the roster's id string, not a second copy
        return CompactAccount.of(account, groups, employee.employee_id if employee else None)

    accounts, memberships, group_ids = await _accounts(idp, page_size, compact, judged)
    return Inventory(
        employees=employees,
        accounts=accounts,
        invalid_records=invalid,
        memberships=memberships,
        group_ids=group_ids,
    )


async def _memberships(
    idp: IdentityProvider, judged: Collection[str] | None
) -> tuple[dict[str, tuple[str, ...]] | None, int, dict[str, str]]:
    """Account id → the names of its groups (those in ``judged`` if given; one tuple shared by the accounts
    holding the same groups), the number of memberships of every group, and every group's id by name; None
    when the provider lists no groups (the user pages' groups then stand).

    Millions of memberships, so no Python frame per membership: for each group, every member's tuple so far
    plus the group's name, made shared, goes back into the map in one ``update`` over ``map`` of C functions."""
    groups = await idp.list_groups()
    if not groups:
        return None, 0, {}
    group_ids = {group.name: group.id for group in groups}
    held: dict[str, tuple[str, ...]] = {}
    shared = _Shared()
    memberships = 0
    while groups:  # each group model (every member id once more) goes as soon as it is read
        group = groups.pop()
        ids, name = group.member_ids, (group.name,)
        memberships += len(ids)
        if judged is None or group.name in judged:
            grown = map(add, map(held.get, ids, repeat(())), repeat(name))  # held[id] + (name,)
            held.update(zip(ids, map(shared.__getitem__, grown), strict=True))
    return held, memberships, group_ids


class _Shared(dict[tuple[str, ...], tuple[str, ...]]):
    """One tuple of group names for all the accounts holding the same groups: looked up in C, inserted on a
    miss (a handful of combinations against millions of accounts)."""

    def __missing__(self, names: tuple[str, ...]) -> tuple[str, ...]:
        self[names] = names
        return names


async def _accounts(
    idp: IdentityProvider,
    page_size: int,
    keep: Callable[[Account, tuple[str, ...] | None], T],
    judged: Collection[str] | None = None,
) -> tuple[list[T], int, dict[str, str]]:
    """Every account of one target as ``keep`` holds it (given the account and its groups by ``list_groups``
    or, in ``judged`` only, from the account; None for the account's own), page by page, the number of
    memberships and the target's group ids by name."""
    held, memberships, group_ids = await _memberships(idp, judged)
    accounts: list[T] = []
    async for page in idp.iter_users(page_size=page_size):
        for account in page:
            if held is not None:
                accounts.append(keep(account, held.pop(account.id, ())))
                continue
            memberships += len(account.groups)
            own = None if judged is None else tuple(g for g in account.groups if g in judged)
            accounts.append(keep(account, own))
    return accounts, memberships, group_ids


async def _target_findings(
    name: str,
    idp: IdentityProvider,
    inventory: Inventory,
    approvals: dict[str, dict[str, datetime]],
    now: datetime,
    policy: Policy,
) -> list[Finding]:
    """One target's findings (:func:`lifecycle.review.find` with its view of the policy and correlation)."""
    accounts, memberships, _ = await _accounts(
        idp,
        200,
        lambda a, groups: a if groups is None else a.model_copy(update={"groups": frozenset(groups)}),
    )
    inventory.accounts += [CompactAccount.of(a) for a in accounts]
    inventory.memberships += memberships
    target = policy.targets[name]
    correlation = correlate(accounts, inventory.employees.values(), target.correlation, policy.naming)
    view = target_policy(policy, target)
    return find(inventory.employees, [], approvals, now, view, target=name, correlation=correlation)


def load_approvals(database_url: str) -> dict[str, dict[str, datetime]]:
    """Employee id → {group → when it was approved or last re-certified}, from the ledger's grants (the same
    rows the planner reads; a revoked grant is not there)."""
    with session_scope(database_url) as session:
        views = grants_by_employee(session=session)
    return {owner: dict(view.granted) for owner, view in views.items() if view.granted}


# ------------------------------------------------------------------------------------------------ run


@dataclass
class ReviewRun:
    """The outcome of one review run."""

    findings: list[Finding]
    auto: dict[str, ActionResult] = field(default_factory=dict)  # finding id → remediation result
    reviewers: dict[str, str] = field(default_factory=dict)  # finding id → reviewer (campaign items)
    recommendations: dict[str, Recommendation] = field(default_factory=dict)  # finding id → advice
    campaign_id: str | None = None
    tickets: dict[str, str | None] = field(default_factory=dict)  # reviewer → ticket id (None: none/failed)
    accounts: int = 0
    memberships: int = 0
    invalid_records: int = 0
    dry_run: bool = False

    def __repr__(self) -> str:
        """Counts only, as :meth:`Inventory.__repr__` (``tenure review run`` returns a run from ``asyncio.run``)."""
        return (
            f"ReviewRun(campaign {self.campaign_id}, {self.accounts} accounts, {len(self.findings)} findings, "
            f"{len(self.auto)} auto-remediated, {len(self.reviewers)} for review, dry run {self.dry_run})"
        )

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
                "target": f.target,
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


async def run_review(
    *,
    hris: HRIS,
    idp: IdentityProvider,
    ticketing: Ticketing | None,
    policy: Policy,
    auditor: Auditor,
    now: datetime | None = None,
    dry_run: bool = False,
    step_factory: Callable[[Applier], Step] | None = None,
    targets: Mapping[str, IdentityProvider] | None = None,
) -> ReviewRun:
    """One access review run (see the module docstring). ``dry_run`` audits the auto-remediations as
    planned and creates no campaign, no tickets and no finding rows. ``targets``: the policy's other
    provisioning targets, reviewed each with its own view of the policy; every finding names its target."""
    now = now or datetime.now(UTC)
    targets = {name: t for name, t in (targets or {}).items() if name in policy.targets}
    with collector_paused():
        inventory = await collect_inventory(hris, idp, judged=review_groups(policy))
        approvals = load_approvals(auditor.database_url)
        findings = find(inventory.employees, inventory.accounts, approvals, now, policy)
        for name, target_idp in targets.items():
            findings += await _target_findings(name, target_idp, inventory, approvals, now, policy)
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
    applier = new_applier(
        idp, ticketing, auditor, dry_run=dry_run, step_factory=step_factory, targets=targets
    )
    if inventory.group_ids:  # the listing just read: a revocation needs no second one
        applier.remember_groups(inventory.group_ids)
    run.auto = await remediate(auto, applier)
    if dry_run:
        return run
    campaign_id = f"rc-{now:%Y%m%d}-{uuid.uuid4().hex[:8]}" if findings else None
    run.campaign_id = campaign_id
    run.reviewers = route_reviewers(manual, inventory.employees, inventory.accounts, policy)
    run.recommendations = recommendations(manual, inventory, auditor.database_url, policy, now)
    for start in range(0, len(findings), FINDING_ROWS):  # a million accounts: ~350,000 rows, not all held
        applier.note_many(
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
                    "provisioning_target": f.target,
                    "campaign": campaign_id,
                    "handling": run.handling(f),
                },
            )
            for f in findings[start : start + FINDING_ROWS]
        )
    if campaign_id is not None:
        deadline = _store_campaign(campaign_id, run, policy, applier, now)
        run.tickets = await _open_tickets(campaign_id, run, applier, deadline)
    applier.note(
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


def provenance(database_url: str) -> dict[tuple[str, str], Provenance]:
    """How each (employee, group) membership came, by the ledger: added by Tenure as an entitlement
    (``birthright``), or granted by a recorded approval or a reviewer's keep (``approval``); absent: by hand."""
    with session_scope(database_url) as session:
        added = applied_targets(session=session, kind="add_membership")
        grants = grants_by_employee(session=session)
    found: dict[tuple[str, str], Provenance] = dict.fromkeys(added, "birthright")
    for employee_id, view in grants.items():
        found.update(dict.fromkeys(((employee_id, g) for g in view.granted), "approval"))
    return found


def recommendations(
    findings: Iterable[Finding], inventory: Inventory, database_url: str, policy: Policy, now: datetime
) -> dict[str, Recommendation]:
    """Finding id → the explained recommendation shown to its reviewer (:mod:`lifecycle.recommend`)."""
    findings = list(findings)
    holders = {a.employee_id: a.groups for a in inventory.accounts if a.employee_id}
    peers = Peers(inventory.employees.values(), holders, policy.review.peers)
    how = provenance(database_url)
    wanted = {f.account_id for f in findings}
    by_id = {a.id: a for a in inventory.accounts if a.id in wanted}
    found: dict[str, Recommendation] = {}
    for finding in findings:
        account = by_id.get(finding.account_id) or account_for(finding)
        employee = inventory.employees.get(finding.employee_id or "")
        group = finding.revoke_group or finding.group or ""
        found[finding.id] = recommend_finding(
            finding,
            employee,
            account,
            peers=peers,
            provenance=how.get((finding.employee_id or "", group), "manual"),
            policy=policy,
            now=now,
        )
    return found


def _store_campaign(
    campaign_id: str, run: ReviewRun, policy: Policy, applier: Applier, now: datetime
) -> datetime:
    """Store the campaign with its items and assignments (:func:`engine.review.campaign.store_campaign`);
    returns the deadline."""
    review = policy.review
    manual = [f for f in run.findings if f.id in run.reviewers]
    campaign = ReviewCampaign(
        id=campaign_id,
        created_at=now,
        remind_at=now + timedelta(days=review.remind_after_days),
        escalate_at=now + timedelta(days=review.escalate_after_days),
        deadline_at=now + timedelta(days=review.deadline_days),
        on_deadline=review.on_deadline,
        correlation_id=applier.auditor.correlation_id,
        status=CampaignStatus.OPEN if manual else CampaignStatus.CLOSED,
        closed_at=None if manual else now,
    )
    store_campaign(
        database_url=applier.database_url,
        campaign=campaign,
        findings=run.findings,
        reviewers=run.reviewers,
        auto=run.auto,
        now=now,
        recommendations=run.recommendations,
    )
    applier.note(
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


def _ticket_body(
    campaign_id: str,
    reviewer: str,
    items: Iterable[Finding],
    deadline: datetime,
    advice: Mapping[str, Recommendation],
) -> str:
    lines = [
        f"Access review {campaign_id}: please decide keep or revoke for each item by "
        f"{deadline:%Y-%m-%d %H:%M} UTC. Undecided items follow the policy at the deadline. Each item's "
        "recommendation says why; it is advice, the decision is yours.",
        "",
    ]
    for f in items:
        lines.append(
            f"- {f.id} [{f.kind.value}] account {f.user_name}"
            + (f" group {f.group}" if f.group else "")
            + f": {f.detail}"
        )
        if f.id in advice:
            lines.append(f"  recommended: {advice[f.id].advice} ({advice[f.id].evidence})")
    lines += [
        "",
        f"Decide: tenure review decide {campaign_id} ITEM keep|revoke --by {reviewer} --reason TEXT",
        "or in the Prefect UI: run the review-decide/review-decide deployment with the same fields.",
    ]
    return "\n".join(lines)


async def _open_tickets(
    campaign_id: str, run: ReviewRun, applier: Applier, deadline: datetime
) -> dict[str, str | None]:
    """One ticket per reviewer listing their items, through the one door (idempotent by reference). Each is
    the plan of that reviewer's share of the campaign (``review:<campaign>:<reviewer>`` in the ledger), and
    they are applied in batches (:meth:`engine.applier.Applier.apply_many`: ``concurrency`` tickets opened at
    once, a transaction per batch level): a review of a million accounts has one reviewer per manager. The
    ticket ids go on the reviewers' assignments in one transaction. Without a ticketing system each ticket is
    recorded skipped."""
    per_reviewer: dict[str, list[Finding]] = defaultdict(list)
    for finding in run.findings:
        if finding.id in run.reviewers:
            per_reviewer[run.reviewers[finding.id]].append(finding)
    reviewers = sorted(per_reviewer)
    plans = [
        Plan(
            employee_id=share(campaign_id, reviewer),
            event="none",
            actions=[
                OpenTicket(
                    employee_id=share(campaign_id, reviewer),
                    reason=f"access review {campaign_id}: {len(items)} item(s) for {reviewer}",
                    occasion=reviewer,
                    request=TicketRequest(
                        reference=campaign_reference(campaign_id, reviewer),
                        purpose=TICKET_PURPOSE,
                        title=f"Access review {campaign_id}: {len(items)} item(s) for {reviewer}",
                        body=_ticket_body(campaign_id, reviewer, items, deadline, run.recommendations),
                    ),
                )
            ],
        )
        for reviewer, items in ((r, per_reviewer[r]) for r in reviewers)
    ]
    tickets: dict[str, str | None] = {}
    for reviewer, report in zip(
        reviewers, await apply_batches(applier, [(p, None) for p in plans]), strict=True
    ):
        opened = [r.target_id for r in report.results if r.outcome is Outcome.APPLIED]
        tickets[reviewer] = opened[0] if opened else None
    with session_scope(applier.database_url) as session:
        set_ticket_ids(session, campaign_id, {r: t for r, t in tickets.items() if t is not None})
        session.commit()
    return tickets
