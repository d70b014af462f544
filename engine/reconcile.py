"""Reconcile one employee: load context (HRIS, IdP, ledger) → plan (pure) → apply (the one door).

Shared by the lifecycle flows and the CLI. The plan is made from state read before the employee's lock is
taken; the applier takes the lock and, if another run changed this employee since the read, plans again from
fresh state (:meth:`engine.applier.Applier.apply`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime

from connectors.errors import InvalidRecordError, NotFoundError
from connectors.protocols import HRIS, Connectors, IdentityProvider
from engine.applier import Applier, ApplyReport, Approver, Scheduler, Step
from engine.auditor import Auditor
from engine.locks import LockHeld
from engine.preflight import check_groups
from lifecycle.actions import DIRECTORY, ActionKind, Plan
from lifecycle.correlation import Correlated, Correlation, Situation
from lifecycle.naming import base_user_name, user_name_candidates
from lifecycle.notices import with_notices
from lifecycle.planner import History, plan
from lifecycle.policy import Policy
from lifecycle.sync_plan import Snapshot, TakenNames, TargetView
from lifecycle.sync_plan import plan_person as plan_everywhere
from models.audit import Outcome
from models.db import session_scope
from models.domain import Account, Employee
from models.ledger import first_run_at, grants_by_employee, last_applied, ledger_employees, sent_notices

__all__ = [
    "UnknownEmployee",
    "histories",
    "adoption_date",
    "taken_user_names",
    "plan_employee",
    "plan_person",
    "reconcile",
]

MAX_NAME_PROBES = 25


class UnknownEmployee(LookupError):
    """Neither the HRIS nor the identity provider knows this employee id."""


def adoption_date(database_url: str, policy: Policy, now: datetime) -> date:
    """Staff hired before this date are adopted on their first run (:mod:`lifecycle.planner`):
    ``policy.adopt_before`` (``TENURE_ADOPT_BEFORE`` overrides it), else the date of Tenure's first run — the
    oldest audit event that is not a dry run's plan, or today for the first run itself."""
    if policy.adopt_before is not None:
        return policy.adopt_before
    with session_scope(database_url) as session:
        first = first_run_at(session=session)
    return (first or now).astimezone(UTC).date()


def histories(
    database_url: str, employee_id: str | None = None, *, target: str = DIRECTORY
) -> dict[str, History]:
    """What the ledger remembers of every employee (or just ``employee_id``), in four queries. For a target
    other than the directory only its disables and enables count (grants are the directory's)."""
    with session_scope(database_url) as session:
        grants = grants_by_employee(session=session, employee_id=employee_id) if target == DIRECTORY else {}
        disabled = last_applied(
            session=session, kind=ActionKind.DISABLE_ACCOUNT.value, employee_id=employee_id, target=target
        )
        enabled = last_applied(
            session=session, kind=ActionKind.ENABLE_ACCOUNT.value, employee_id=employee_id, target=target
        )
        known = ledger_employees(session=session, employee_id=employee_id)
    found: dict[str, History] = {}
    for owner in set(grants) | set(disabled) | set(known):
        view = grants.get(owner)
        disabled_at = disabled.get(owner)
        still_disabled = disabled_at is not None and (owner not in enabled or enabled[owner] < disabled_at)
        found[owner] = History(
            granted=frozenset(view.granted) if view else frozenset(),
            revoked=view.revoked if view else frozenset(),
            left_before=disabled_at is not None,
            disabled_at=disabled_at if still_disabled else None,
            seen=owner in known,
            adopted=known.get(owner, False),
        )
    return found


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
    """The plan for one employee (every target) and their directory account (:func:`plan_person`)."""
    the_plan, account, _ = await plan_person(
        employee_id, connectors=connectors, policy=policy, database_url=database_url, now=now
    )
    return the_plan, account


async def _target_view(
    name: str, idp: IdentityProvider, employee: Employee, names: list[str], database_url: str
) -> TargetView:
    """One person's account in target ``name`` (by employee id, with its groups) and the ledger's history of
    it. Without one, an account there that carries no employee id but holds one of ``names`` (the person's
    userName, the one the naming policy forms, or the work e-mail) blocks a new account: correlating it needs
    every employee, which the sync reads (it adopts or disputes it)."""
    eid = employee.employee_id
    account = await idp.find_user_by_employee_id(eid)
    if account is not None:
        account = await with_memberships(idp, account)
        return TargetView(
            accounts={eid: account},
            correlation=Correlation(
                owner={eid: Correlated(account, Situation.LINKED, (eid,), "employee_id")}
            ),
            histories=histories(database_url, eid, target=name),
        )
    correlation = Correlation()
    for candidate in dict.fromkeys(n for n in names if n):
        holder = await idp.find_user_by_username(candidate)
        if holder is not None and not holder.employee_id:
            why = "an account without an employee id matches; the next sync adopts it"
            correlation.accounts.append(Correlated(holder, Situation.DISPUTED, (eid,), "user_name", why))
            break
    return TargetView(correlation=correlation)


async def plan_person(
    employee_id: str,
    *,
    connectors: Connectors,
    policy: Policy,
    database_url: str,
    now: datetime | None = None,
) -> tuple[Plan, Account | None, dict[str, Account | None]]:
    """The plan for one employee over the directory and every target, their directory account and their
    accounts in the other targets. Raises InvalidRecordError for a bad HR record and UnknownEmployee when
    neither the HRIS nor the identity provider knows the id."""
    now = now or datetime.now(UTC)
    try:
        employee: Employee | None = await connectors.hris.get_employee(employee_id)
    except NotFoundError:
        employee = None
    account = await connectors.idp.find_user_by_employee_id(employee_id)
    if employee is None and account is None:
        raise UnknownEmployee(f"no employee {employee_id} in the HRIS ({connectors.hris.source}) or the IdP")
    if account is not None and not account.groups:
        account = await with_memberships(connectors.idp, account)
    taken: frozenset[str] = frozenset()
    if employee is not None and account is None:
        taken = await taken_user_names(connectors.idp, employee, policy)
    history = histories(database_url, employee_id).get(employee_id)
    if employee is None:
        return plan(employee, account, policy, now, taken_user_names=taken, history=history), account, {}
    names = TakenNames(policy.naming.email_domain)
    for name in taken:
        names.add(name)
    user_name = account.user_name if account is not None else base_user_name(employee, policy.naming)
    snapshot = Snapshot(
        employees=[(employee_id, employee)],
        accounts={employee_id: account} if account is not None else {},
        taken=names,
        targets={
            name: await _target_view(
                name,
                idp,
                employee,
                [user_name, base_user_name(employee, policy.naming), employee.work_email or ""],
                database_url,
            )
            for name, idp in connectors.targets.items()
            if name in policy.targets
        },
    )
    the_plan, account, others = plan_everywhere(
        employee,
        snapshot,
        policy,
        now,
        {employee_id: history or History()},
        adopt_before=adoption_date(database_url, policy, now),
    )
    if policy.notify.joiner or policy.notify.leaver:
        with session_scope(database_url) as session:
            sent = sent_notices(
                session=session, employee_id=employee_id, notifying=connectors.notifier is not None
            )
        told = with_notices(the_plan, employee, account, None, policy, now, sent=sent)
        if any(getattr(a, "audience", None) == "manager" for a in told.actions):  # look the manager up
            manager = await manager_of(connectors.hris, employee)
            told = with_notices(the_plan, employee, account, manager, policy, now, sent=sent)
        the_plan = told
    return the_plan, account, others


async def manager_of(hris: HRIS, employee: Employee) -> Employee | None:
    """The employee's manager as the HRIS knows them; None when there is none, or the record is unusable."""
    if employee.manager_id is None:
        return None
    try:
        return await hris.get_employee(employee.manager_id)
    except (NotFoundError, InvalidRecordError):
        return None


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
    """Bring one employee's accounts in line with their HR record. A bad HR record is audited, not raised; a
    lock held by another run past its timeout changes nothing and is reported as the error; a group the policy
    grants but the IdP lacks raises :class:`engine.preflight.MissingGroups` before anything is applied."""
    applier = Applier(
        idp=connectors.idp,
        targets=connectors.targets,
        ticketing=connectors.ticketing,
        auditor=auditor,
        dry_run=dry_run,
        scheduler=scheduler,
        approver=approver,
        notifier=connectors.notifier,
    )
    if step_factory is not None:
        applier.step = step_factory(applier)

    async def planned() -> tuple[Plan, Account | None, dict[str, Account | None]]:
        return await plan_person(
            employee_id, connectors=connectors, policy=policy, database_url=auditor.database_url, now=now
        )

    applier.remember_groups(await check_groups(connectors.idp, policy))  # preflight: raises MissingGroups
    read_at = datetime.now(UTC)
    try:
        the_plan, account, accounts = await planned()
    except InvalidRecordError as exc:
        applier.note(
            action="hris.record.invalid",
            target_system=exc.source or connectors.hris.source,
            employee_id=employee_id,
            outcome=Outcome.FAILED,
            reason=exc.reason,
            details={"row": exc.row} if exc.row is not None else {},
        )
        return ApplyReport(employee_id, "none", error=f"invalid HR record: {exc.reason}")
    if the_plan.skipped_reason and not the_plan.actions:
        applier.note(
            action="lifecycle.skip",
            target_system="tenure",
            employee_id=employee_id,
            outcome=Outcome.SKIPPED,
            reason=the_plan.skipped_reason,
        )
    try:
        return await applier.apply(the_plan, account, accounts=accounts, planned_at=read_at, replan=planned)
    except LockHeld as exc:
        return ApplyReport(employee_id, the_plan.event, error=str(exc))
