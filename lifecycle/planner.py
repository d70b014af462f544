"""The joiner/mover/leaver planner: ``plan = diff(employee, account, policy, now)``. Pure, no I/O.

One employee, their current IdP account (found by employee id) and the policy give an ordered
:class:`~lifecycle.actions.Plan`. Re-planning after the plan is applied gives no account or membership
action again; tickets, approval requests and schedules may repeat with the *same* ledger keys (the
planner cannot see tickets, requests or schedules, so the apply step dedupes them by key/reference).

The state machine, with every instant computed in the employee's time zone
(``policy.timezone_for(location)``) and compared in UTC:

* **pre-hire** (hire day not reached): before ``hire_date - prehire_days`` (00:00 local) the plan is one
  SCHEDULE "create" at that instant; from then on the account is created *disabled* and a SCHEDULE
  "enable" names the hire day 00:00 local. Dates win over the HR status: a "pending" employee whose hire
  day has come is enabled, an "active" one whose hire day lies ahead is treated as pre-hire.
* **active** and **leave**: the account exists, is enabled, its attributes equal the HR record and it
  holds its entitlements (:mod:`lifecycle.birthright`). Leave keeps the account enabled and maintained
  (a policy switch to suspend on leave can come later). A disabled account is enabled; with evidence of
  an earlier tenure (a termination date before the hire date, a past sign-in, or ``left_before``: Tenure
  disabled the account as a leaver) that is a **rehire**:
  the same account is enabled (never a second one created) and the joiner tickets are emitted again.
* **mover**: UPDATE with only the changed attributes, ADD missing entitlements, REMOVE managed groups
  (``policy.managed_groups``) the employee is no longer granted. Groups outside policy (granted by
  hand) are left alone; so are groups with a recorded approval or kept in a review, and privileged groups
  a rule names that await approval. A group a reviewer revoked is neither granted nor requested again
  until a new approval is recorded (``History.revoked``). ``user_name`` and ``email`` are formed once, at creation; renames are manual.
* **leaver** (status terminated, or the termination instant — ``termination_date`` at
  ``leaver.termination_time`` local — has passed while HR still says active): timing "immediate"
  disables now; "at_termination" schedules the disable at the termination instant, or disables once it
  has passed. After disabling, managed groups are removed (``leaver.remove_groups``) and, with
  ``delete_after_days``, a delete is scheduled that many days after the disable (the one Tenure recorded,
  or now when disabling now: a termination recorded late still gets its grace period), or done once past. Terminated before the start date without an account: nothing, with a reason.
* An employee with a future termination date (on or after the hire date) also gets a SCHEDULE "disable"
  at the termination instant, so the nightly run is not the only trigger. A SCHEDULE means "re-plan this
  employee at ``at``"; a stale schedule (HR moved the date) then plans nothing harmful.
* No HR record (``employee=None``): an orphan account; nothing is planned, the access review owns it.
* **adopt** (taking over the staff a company already has): on a person's first run (``History.seen`` false:
  no ledger entry) an employee whose hire date lies before ``adopt_before`` and who is not a leaver is
  linked (an ADOPT action, audited) and only reconciled: attributes updated, a disabled account enabled,
  memberships added and removed, an account created if there is none — no joiner tickets, no welcome. An
  adopted person whose account could not be created yet gets it later without tickets (``History.adopted``).

Tickets (:mod:`lifecycle.tickets`) carry the reference ``tenure:<employee_id>:<purpose>:<occasion>``; the
occasion is the hire date (joiner, rehire), the termination date (leaver; ``terminated`` without one) or
the first 8 hex digits of sha256("<department>|<title>") of the new record (mover). A re-run of the same
occasion finds its ticket; a rehire or a second move is a new occasion and opens a new one.

Ordering: create → update → enable → add memberships → (remove memberships) → approvals → tickets →
schedules; leavers: disable → remove memberships → tickets → delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lifecycle.actions import (
    Action,
    AddMembership,
    AdoptEmployee,
    CreateAccount,
    DeleteAccount,
    DisableAccount,
    EnableAccount,
    OpenTicket,
    Plan,
    PlanEvent,
    RemoveMembership,
    RequestApproval,
    Schedule,
    ScheduleEvent,
    UpdateAccount,
    describe_changes,
)
from lifecycle.birthright import Entitlements, entitlements
from lifecycle.naming import email_for, unique_user_name
from lifecycle.policy import Policy, TicketTemplate
from lifecycle.tickets import TicketEvent, occasion_for, ticket_for
from models.compact import EmployeeFacts
from models.domain import Account, AccountAttributes, Employee, EmployeeStatus

__all__ = ["History", "Timeline", "timeline", "plan", "desired_attributes"]


@dataclass(frozen=True)
class Timeline:
    """The instants (UTC) that drive an employee's lifecycle; None where HR gave no date."""

    create_at: datetime | None  # hire_date - prehire_days, 00:00 local
    enable_at: datetime | None  # hire_date, 00:00 local
    disable_at: datetime | None  # termination_date at leaver.termination_time, local
    delete_at: datetime | None  # disable_at + leaver.delete_after_days


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at wall-clock ``at`` in ``tz`` as a UTC instant (PEP 495 fold=0 in DST gaps/overlaps)."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def timeline(employee: EmployeeFacts, policy: Policy) -> Timeline:
    """Compute the employee's lifecycle instants from HR dates and policy."""
    tz = policy.timezone_for(employee.location)
    create_at = enable_at = disable_at = delete_at = None
    if employee.hire_date is not None:
        enable_at = _local_instant(employee.hire_date, time(0, 0), tz)
        create_at = _local_instant(employee.hire_date - timedelta(days=policy.prehire_days), time(0, 0), tz)
    if employee.termination_date is not None:
        hh, mm = (int(part) for part in policy.leaver.termination_time.split(":"))
        disable_at = _local_instant(employee.termination_date, time(hh, mm), tz)
        if policy.leaver.delete_after_days is not None:
            delete_at = disable_at + timedelta(days=policy.leaver.delete_after_days)
    return Timeline(create_at=create_at, enable_at=enable_at, disable_at=disable_at, delete_at=delete_at)


def desired_attributes(
    employee: Employee, user_name: str, email: str | None, *, active: bool
) -> AccountAttributes:
    """The account attributes the HR record asks for (names kept in Unicode; only userName is folded)."""
    return AccountAttributes(**_desired_values(employee, user_name, email), active=active)


def _desired_values(employee: Employee, user_name: str, email: str | None) -> dict[str, str | None]:
    """:func:`desired_attributes` but ``active``, as plain values (comparing them needs no model built)."""
    return {
        "user_name": user_name,
        "employee_id": employee.employee_id,
        "given_name": employee.given_name,
        "family_name": employee.last_name,
        "display_name": employee.display_name,
        "email": email,
        "title": employee.title,
        "department": employee.department,
        "manager_id": employee.manager_id,
    }


@dataclass(frozen=True)
class History:
    """What the ledger (:mod:`models.ledger`) remembers of an employee that the accounts cannot show.

    ``granted``: groups with a recorded approval or kept in an access review (re-certified).
    ``revoked``: groups a reviewer revoked: never granted again, nor requested, without a new approval.
    ``left_before``: Tenure once disabled the account as a leaver — evidence of a rehire even when the HRIS
    cleared the termination date. ``disabled_at``: when Tenure last disabled the account (the deletion grace
    period counts from it). ``seen``: the ledger holds an entry for this person (not their first run);
    ``adopted``: they were adopted (no joiner tickets for them, ever, unless rehired).
    """

    granted: frozenset[str] = frozenset()
    revoked: frozenset[str] = frozenset()
    left_before: bool = False
    disabled_at: datetime | None = None
    seen: bool = False
    adopted: bool = False


@dataclass(frozen=True)
class _Context:
    employee: Employee
    account: Account | None
    policy: Policy
    now: datetime
    timeline: Timeline
    history: History
    taken_user_names: frozenset[str]

    @property
    def employee_id(self) -> str:
        return self.employee.employee_id

    def schedule(self, event: ScheduleEvent, at: datetime, reason: str) -> Action:
        return Schedule(employee_id=self.employee_id, event=event, at=at.astimezone(UTC), reason=reason)

    def tickets(self, event: TicketEvent, user_name: str) -> list[Action]:
        """OPEN_TICKET per ``event`` template (a rehire uses "joiner"), via :mod:`lifecycle.tickets`."""
        templates: list[TicketTemplate] = getattr(self.policy.tickets, event)
        occasion = occasion_for(event, self.employee)
        return [
            OpenTicket(
                employee_id=self.employee_id,
                reason=f"{event} ticket '{t.purpose}'",
                request=ticket_for(event, t, self.employee, user_name=user_name),
                occasion=occasion,
            )
            for t in templates
        ]

    def plan(self, event: PlanEvent, actions: list[Action] | None = None, skipped: str | None = None) -> Plan:
        return Plan(
            employee_id=self.employee.employee_id, event=event, actions=actions or [], skipped_reason=skipped
        )


def _terminated_before_start(employee: Employee) -> bool:
    e = employee
    return e.termination_date is not None and e.hire_date is not None and e.termination_date < e.hire_date


def _is_leaver(ctx: _Context) -> bool:
    """Status terminated, or the termination instant has passed (dates win over a lagging status)."""
    if ctx.employee.status is EmployeeStatus.TERMINATED:
        return True
    at = ctx.timeline.disable_at
    return at is not None and not _terminated_before_start(ctx.employee) and ctx.now >= at


def _has_started(ctx: _Context) -> bool:
    """The hire day has begun (local time); without a hire date, anyone but a pending hire has."""
    at = ctx.timeline.enable_at
    if at is None:
        return ctx.employee.status is not EmployeeStatus.PENDING
    return ctx.now >= at


def plan(
    employee: Employee | None,
    account: Account | None,
    policy: Policy,
    now: datetime,
    *,
    taken_user_names: frozenset[str] = frozenset(),
    history: History | None = None,
    adopt_before: date | None = None,
) -> Plan:
    """Plan the actions that bring ``account`` in line with ``employee`` under ``policy`` at ``now``.

    ``taken_user_names``: user names of OTHER accounts (collision suffixes). ``history``: what the ledger
    remembers of this employee (:class:`History`). ``adopt_before``: the adoption date (module docstring;
    None: no adoption). ``now`` must be timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if employee is None:
        if account is None:
            raise ValueError("plan needs an employee or an account")
        return Plan(
            employee_id=account.employee_id,
            event="none",
            skipped_reason="no HR record for this account (orphan); left to the access review",
        )
    if account is not None and account.employee_id != employee.employee_id:
        raise ValueError(
            f"account {account.id} belongs to employee {account.employee_id}, not {employee.employee_id}"
        )
    ctx = _Context(
        employee=employee,
        account=account,
        policy=policy,
        now=now.astimezone(UTC),
        timeline=timeline(employee, policy),
        history=history or History(),
        taken_user_names=frozenset(taken_user_names),
    )
    if _is_leaver(ctx):
        return _plan_leaver(ctx)
    ents = entitlements(employee, policy, ctx.history.granted, revoked=ctx.history.revoked)
    if _adopting(ctx, adopt_before):
        assert adopt_before is not None
        return _plan_adoption(ctx, account, ents, adopt_before)
    if account is None:
        return _plan_joiner(ctx, ents)
    return _plan_existing(ctx, account, ents)


def _termination_schedule(ctx: _Context) -> list[Action]:
    """A SCHEDULE "disable" for a known future termination (not for an old one before a rehire)."""
    at = ctx.timeline.disable_at
    if at is None or _terminated_before_start(ctx.employee) or ctx.now >= at:
        return []
    return [ctx.schedule("disable", at, "leaver: termination date known; disable at the termination time")]


def _memberships(ctx: _Context, ents: Entitlements, current: frozenset[str]) -> list[Action]:
    """ADD missing grants, REMOVE managed groups no longer granted, REQUEST_APPROVAL for privileged
    groups a rule names that lack an approval (unless already held: the access review recertifies)."""
    eid = ctx.employee_id
    actions: list[Action] = [
        AddMembership(employee_id=eid, group=g, reason=f"entitled: {ents.reasons[g]}")
        for g in sorted(ents.grants - current)
    ]
    actions += [
        RemoveMembership(employee_id=eid, group=g, reason=_removal_reason(ctx, g))
        for g in sorted((ctx.policy.managed_groups & current) - ents.protected)
    ]
    requested = sorted(ents.needs_approval - current)
    if requested:
        by_name = {p.name: p for p in ctx.policy.privileged_groups}
        actions += [
            RequestApproval(
                employee_id=eid,
                group=g,
                reason=ents.reasons[g],
                approvers=tuple(by_name[g].approvers),
                timeout_hours=by_name[g].approval_timeout_hours,
            )
            for g in requested
        ]
    return actions


def _removal_reason(ctx: _Context, group: str) -> str:
    if group in ctx.history.revoked:
        return "revoked in an access review; not granted again without a new approval"
    return "managed group no longer granted by policy"


def _plan_joiner(ctx: _Context, ents: Entitlements) -> Plan:
    """No account yet: schedule the creation, or create it (disabled before the hire day)."""
    e, tl = ctx.employee, ctx.timeline
    if e.status is EmployeeStatus.PENDING and e.hire_date is None:
        return ctx.plan("joiner", skipped="pending hire without a hire date; nothing to schedule")
    started = _has_started(ctx)
    if not started and tl.create_at is not None and ctx.now < tl.create_at:
        return ctx.plan(
            "joiner",
            [
                ctx.schedule(
                    "create", tl.create_at, "joiner: create the account when the prehire window opens"
                )
            ],
        )
    user_name = unique_user_name(e, ctx.policy.naming, ctx.taken_user_names)
    if not user_name:
        return ctx.plan("joiner", skipped="the name yields an empty userName under the naming template")
    attrs = desired_attributes(e, user_name, email_for(user_name, ctx.policy.naming), active=started)
    state = "enabled (hire day reached)" if started else "disabled until the hire day"
    actions: list[Action] = [
        CreateAccount(employee_id=ctx.employee_id, attributes=attrs, reason=f"joiner: new account, {state}")
    ]
    if not started and tl.enable_at is not None:
        actions.append(ctx.schedule("enable", tl.enable_at, "joiner: enable on the hire day"))
    actions += _memberships(ctx, ents, frozenset())
    if not ctx.history.adopted:  # an adopted person's account created late still opens no joiner ticket
        actions += ctx.tickets("joiner", user_name)
    actions += _termination_schedule(ctx)
    return ctx.plan("joiner", actions)


def _adopting(ctx: _Context, adopt_before: date | None) -> bool:
    """A first run for someone hired before the adoption date who has started (module docstring)."""
    hired = ctx.employee.hire_date
    return (
        adopt_before is not None
        and not ctx.history.seen
        and hired is not None
        and hired < adopt_before
        and _has_started(ctx)
    )


def _update(ctx: _Context, account: Account) -> list[UpdateAccount]:
    """UPDATE only the attributes the HR record changed (none: no action)."""
    desired = _desired_values(ctx.employee, account.user_name, account.email)
    changes = {name: value for name, value in desired.items() if getattr(account, name) != value}
    if not changes:
        return []
    previous = {k: getattr(account, k) for k in changes}
    return [
        UpdateAccount(
            employee_id=ctx.employee_id,
            user_name=account.user_name,
            changes=changes,
            previous=previous,
            reason=describe_changes(changes, previous),
        )
    ]


def _plan_adoption(ctx: _Context, account: Account | None, ents: Entitlements, adopt_before: date) -> Plan:
    """Link someone already employed: reconcile attributes and groups, no joiner tickets."""
    e = ctx.employee
    link = AdoptEmployee(
        employee_id=ctx.employee_id,
        adopt_before=adopt_before,
        account_id=account.id if account is not None else None,
        reason=f"adopt: hired {e.hire_date} before the adoption date {adopt_before}; no joiner tickets",
    )
    actions: list[Action] = [link]
    if account is None:
        user_name = unique_user_name(e, ctx.policy.naming, ctx.taken_user_names)
        if not user_name:
            return ctx.plan("adopt", skipped="the name yields an empty userName under the naming template")
        attrs = desired_attributes(e, user_name, email_for(user_name, ctx.policy.naming), active=True)
        actions.append(
            CreateAccount(
                employee_id=ctx.employee_id,
                attributes=attrs,
                reason="adopt: employed before the adoption date and no account yet; created enabled",
            )
        )
        actions += _memberships(ctx, ents, frozenset())
    else:
        actions += _update(ctx, account)
        if not account.active:
            actions.append(
                EnableAccount(
                    employee_id=ctx.employee_id,
                    user_name=account.user_name,
                    reason="adopt: the HR record is current, the account is disabled",
                )
            )
        actions += _memberships(ctx, ents, account.groups)
    return ctx.plan("adopt", actions + _termination_schedule(ctx))


def _plan_existing(ctx: _Context, account: Account, ents: Entitlements) -> Plan:
    """An account exists for a pending/active/on-leave employee: mover changes, enable, rehire."""
    e, tl = ctx.employee, ctx.timeline
    update = _update(ctx, account)
    changes = update[0].changes if update else {}
    actions: list[Action] = [*update]
    enabling = not account.active
    rehire = enabling and (
        _terminated_before_start(e) or account.last_sign_in is not None or ctx.history.left_before
    )
    label: PlanEvent = "rehire" if rehire else "joiner"
    if enabling and _has_started(ctx):
        actions.append(
            EnableAccount(
                employee_id=ctx.employee_id,
                user_name=account.user_name,
                reason=f"{label}: hire day reached, account is disabled",
            )
        )
    elif enabling and tl.enable_at is not None:
        actions.append(ctx.schedule("enable", tl.enable_at, f"{label}: enable on the hire day"))
    actions += _memberships(ctx, ents, account.groups)
    if rehire:
        actions += ctx.tickets("joiner", account.user_name)
    elif not enabling and ({"department", "title"} & changes.keys()):
        actions += ctx.tickets("mover", account.user_name)
    termination = _termination_schedule(ctx)
    event: PlanEvent
    if enabling:
        event = label
    elif actions:
        event = "mover"
    elif termination:
        event = "leaver"
    else:
        event = "none"
    return ctx.plan(event, actions + termination)


def _plan_leaver(ctx: _Context) -> Plan:
    """Disable (now or at the termination instant), strip managed groups, tickets, then delete."""
    e, tl, policy, account = ctx.employee, ctx.timeline, ctx.policy, ctx.account
    if account is None:
        why = (
            "terminated before the start date; no account was created"
            if _terminated_before_start(e)
            else "leaver without an account; nothing to do"
        )
        return ctx.plan("leaver", skipped=why)
    immediate = policy.leaver.timing == "immediate" and e.status is EmployeeStatus.TERMINATED
    disable_now = immediate or tl.disable_at is None or ctx.now >= tl.disable_at
    actions: list[Action] = []
    if account.active and disable_now:
        why = (
            "policy timing is immediate"
            if immediate
            else "no termination date"
            if tl.disable_at is None
            else "termination time reached"
        )
        actions.append(
            DisableAccount(employee_id=ctx.employee_id, user_name=account.user_name, reason=f"leaver: {why}")
        )
    elif account.active and tl.disable_at is not None:
        actions.append(ctx.schedule("disable", tl.disable_at, "leaver: disable at the termination time"))
    disabled = disable_now or not account.active
    if disabled and policy.leaver.remove_groups:
        actions += [
            RemoveMembership(employee_id=ctx.employee_id, group=g, reason="leaver: remove managed group")
            for g in sorted(policy.managed_groups & account.groups)
        ]
    actions += ctx.tickets("leaver", account.user_name)
    delete_at = _delete_at(ctx, disabling_now=account.active and disable_now)
    if disabled and delete_at is not None:
        why = f"leaver: delete {policy.leaver.delete_after_days} days after the account was disabled"
        if ctx.now >= delete_at:
            actions.append(
                DeleteAccount(employee_id=ctx.employee_id, user_name=account.user_name, reason=why)
            )
        else:
            actions.append(ctx.schedule("delete", delete_at, why))
    return ctx.plan("leaver", actions)


def _delete_at(ctx: _Context, *, disabling_now: bool) -> datetime | None:
    """``delete_after_days`` after the disable, whatever the termination date: a termination recorded late
    still gets its whole grace period. The disable is now when disabling now, else the one Tenure recorded; the
    grace period never starts before the termination instant (an account disabled outside Tenure counts from
    that instant alone)."""
    days = ctx.policy.leaver.delete_after_days
    if days is None:
        return None
    disabled = ctx.now if disabling_now else ctx.history.disabled_at
    starts = [moment.astimezone(UTC) for moment in (disabled, ctx.timeline.disable_at) if moment is not None]
    return max(starts) + timedelta(days=days) if starts else None
