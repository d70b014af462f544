"""Reconcile one employee: fetch (HRIS, IdP) → plan (pure) → apply (audited). Shared by flows and the CLI."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from sqlmodel import select

from connectors.errors import InvalidRecordError, NotFoundError
from connectors.protocols import IdentityProvider
from lifecycle.actions import ActionKind, Plan
from lifecycle.naming import user_name_candidates
from lifecycle.planner import plan
from lifecycle.policy import Policy
from models.audit import Outcome
from models.db import session_scope
from models.domain import Account, Employee
from models.state import LedgerEntry
from tenure.apply import Applier, ApplyReport, Approver, Scheduler, Step
from tenure.auditor import Auditor
from tenure.compose import Connectors

__all__ = [
    "approvals_by_employee",
    "disabled_as_leavers",
    "taken_user_names",
    "plan_employee",
    "reconcile",
]

MAX_NAME_PROBES = 25


def approvals_by_employee(database_url: str, employee_id: str | None = None) -> dict[str, frozenset[str]]:
    """Privileged groups each employee (or just ``employee_id``) holds a recorded approval for, in one query."""
    found: dict[str, set[str]] = defaultdict(set)
    query = select(LedgerEntry.employee_id, LedgerEntry.target).where(
        LedgerEntry.kind == ActionKind.REQUEST_APPROVAL.value, LedgerEntry.status == "applied"
    )
    if employee_id is not None:
        query = query.where(LedgerEntry.employee_id == employee_id)
    with session_scope(database_url) as session:
        for owner, group in session.exec(query).all():
            found[owner].add(group)
    return {owner: frozenset(groups) for owner, groups in found.items()}


def disabled_as_leavers(database_url: str, employee_id: str | None = None) -> set[str]:
    """Employees (or just ``employee_id``) whose account Tenure once disabled: a later enable is a rehire."""
    query = select(LedgerEntry.employee_id).where(
        LedgerEntry.kind == ActionKind.DISABLE_ACCOUNT.value, LedgerEntry.status == "applied"
    )
    if employee_id is not None:
        query = query.where(LedgerEntry.employee_id == employee_id)
    with session_scope(database_url) as session:
        return set(session.exec(query.distinct()).all())


async def taken_user_names(idp: IdentityProvider, employee: Employee, policy: Policy) -> frozenset[str]:
    """User names (base, base2, base3, ...) other accounts already hold, probed until the first free one."""
    taken: set[str] = set()
    for candidate in itertools.islice(user_name_candidates(employee, policy.naming), MAX_NAME_PROBES):
        holder = await idp.find_user_by_username(candidate)
        if holder is None:
            break
        if holder.employee_id != employee.employee_id:
            taken.add(candidate)
    return frozenset(taken)


async def with_memberships(idp: IdentityProvider, account: Account) -> Account:
    """The account with its group names read from the groups' member lists, for directories whose user
    resource does not carry its groups (SCIM's read-only ``groups`` is optional, RFC 7643 §4.1.2)."""
    groups = frozenset(g.name for g in await idp.list_groups() if account.id in g.member_ids)
    return account.model_copy(update={"groups": groups})


async def plan_employee(
    employee_id: str,
    *,
    connectors: Connectors,
    policy: Policy,
    database_url: str,
    now: datetime | None = None,
) -> tuple[Plan, Account | None]:
    """The plan for one employee and their current account. Raises InvalidRecordError for a bad HR record."""
    now = now or datetime.now(UTC)
    try:
        employee: Employee | None = await connectors.hris.get_employee(employee_id)
    except NotFoundError:
        employee = None
    account = await connectors.idp.find_user_by_employee_id(employee_id)
    if account is not None and not account.groups:
        account = await with_memberships(connectors.idp, account)
    taken: frozenset[str] = frozenset()
    if employee is not None and account is None:
        taken = await taken_user_names(connectors.idp, employee, policy)
    result = plan(
        employee,
        account,
        policy,
        now,
        taken_user_names=taken,
        approvals=approvals_by_employee(database_url, employee_id).get(employee_id, frozenset()),
        left_before=employee_id in disabled_as_leavers(database_url, employee_id),
    )
    return result, account


async def reconcile(
    employee_id: str,
    *,
    connectors: Connectors,
    policy: Policy,
    auditor: Auditor,
    dry_run: bool = False,
    scheduler: Scheduler | None = None,
    approver: Approver | None = None,
    step_factory: Callable[[Applier], Step] | None = None,
    now: datetime | None = None,
) -> ApplyReport:
    """Bring one employee's accounts in line with their HR record. A bad HR record is audited, not raised."""
    try:
        the_plan, account = await plan_employee(
            employee_id, connectors=connectors, policy=policy, database_url=auditor.database_url, now=now
        )
    except InvalidRecordError as exc:
        auditor.record(
            action="hris.record.invalid",
            target_system=exc.source or connectors.hris.source,
            employee_id=employee_id,
            outcome=Outcome.FAILED,
            reason=exc.reason,
            details={"row": exc.row} if exc.row is not None else {},
        )
        return ApplyReport(employee_id, "none", error=f"invalid HR record: {exc.reason}")
    if the_plan.skipped_reason and not the_plan.actions:
        auditor.record(
            action="lifecycle.skip",
            target_system="tenure",
            employee_id=employee_id,
            outcome=Outcome.SKIPPED,
            reason=the_plan.skipped_reason,
        )
    applier = Applier(
        idp=connectors.idp,
        ticketing=connectors.ticketing,
        auditor=auditor,
        dry_run=dry_run,
        scheduler=scheduler,
        approver=approver,
    )
    if step_factory is not None:
        applier.step = step_factory(applier)
    return await applier.apply(the_plan, account)
