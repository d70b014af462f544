"""Who is told what, and when: the notifications of a plan. Pure, no I/O.

``notices(plan, employee, account, manager, policy, now, sent=…)`` adds the policy's ``notify:`` messages to an
employee's :class:`~lifecycle.actions.Plan` as :class:`~lifecycle.actions.Notify` actions (the applier sends
them through the one door, after the plan's other steps, so a notification never blocks provisioning):

* **joiner**, ``when: prehire`` — the plan creates the account before or on the hire day: the manager hears
  when it becomes active, its groups and tickets. Occasion: the hire date. An account created for someone
  whose hire day is long past (adopting an existing directory, a record the HRIS sent late) tells nobody, and
  neither does an adoption (``plan.event == "adopt"``), whenever the person was hired.
* **leaver**, ``when: planned`` — the plan disables an active account now, or its termination instant lies
  ahead: the manager hears what is removed and when. Occasion: the termination date.
* **failure** (:func:`failure_notices`) — a flow run failed or crashed: the named recipients (ops) hear its id,
  state and message. Occasion: the flow run id.

Instants are shown in the recipient's time zone (the manager's location, else the policy's default), e.g.
``Mon 5 Jan 2026 09:00 (Europe/Berlin)``. A manager the HRIS does not know, or without a work e-mail, resolves
to ``policy.fallback_recipient``; the action says so (``fallback``, and its reason). Only a manager sees their
report's name: for anyone else the name fields show the employee id. ``sent``: ledger keys of notifications
already sent (or deliberately skipped), so a re-run plans none of them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from lifecycle.actions import (
    DIRECTORY,
    AddMembership,
    CreateAccount,
    DisableAccount,
    Notify,
    OpenTicket,
    Plan,
    RequestApproval,
)
from lifecycle.planner import timeline
from lifecycle.policy import NoticeRule, Policy
from models.domain import Account, Employee

__all__ = ["RunFailure", "local_time", "notices", "with_notices", "with_ticket_ids", "failure_notices"]

_NAME_FIELDS = ("display_name",)
# A creation later than this after the hire day began is a backfill (adoption, a missed record), not news.
NEW_HIRE_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class RunFailure:
    """A flow run that ended Failed or Crashed (ids and the state message only)."""

    flow_name: str
    flow_run_id: str
    state: str
    message: str


@dataclass(frozen=True)
class _Recipient:
    to: str
    tz: ZoneInfo
    recipient_id: str | None = None
    is_manager: bool = False
    fallback_why: str | None = None


def local_time(moment: datetime, tz: ZoneInfo) -> str:
    """``Mon 5 Jan 2026 09:00 (Europe/Berlin)``: the instant on the recipient's wall clock."""
    here = moment.astimezone(tz)
    return f"{here:%a} {here.day} {here:%b %Y %H:%M} ({tz.key})"


def _manager_recipient(employee: Employee, manager: Employee | None, policy: Policy) -> _Recipient:
    if manager is not None and manager.work_email:
        return _Recipient(
            manager.work_email, policy.timezone_for(manager.location), manager.employee_id, is_manager=True
        )
    if employee.manager_id is None:
        why = "no manager on record"
    elif manager is None:
        why = f"manager {employee.manager_id} not in the HRIS"
    else:
        why = f"manager {employee.manager_id} has no work e-mail"
    assert policy.fallback_recipient is not None  # Policy validation requires one for a manager rule
    return _Recipient(
        policy.fallback_recipient, policy.timezone_for(None), employee.manager_id, fallback_why=why
    )


def _recipient(rule: NoticeRule, employee: Employee, manager: Employee | None, policy: Policy) -> _Recipient:
    if rule.to == "manager":
        return _manager_recipient(employee, manager, policy)
    return _Recipient(policy.recipients[rule.to], policy.timezone_for(None))


def _notify(
    rule: NoticeRule,
    *,
    employee_id: str,
    recipient: _Recipient,
    fields: Mapping[str, str],
    policy: Policy,
    occasion: str,
    reason: str,
) -> Notify:
    template = policy.notify.template(rule.template)
    shown = dict(fields)
    if not recipient.is_manager:
        shown.update({name: employee_id for name in _NAME_FIELDS if name in shown})
    if recipient.fallback_why:
        reason = f"{reason}; {recipient.fallback_why}: told the fallback recipient"
    return Notify(
        employee_id=employee_id,
        reason=reason,
        template=rule.template,
        audience=rule.to,
        to=recipient.to,
        recipient_id=recipient.recipient_id,
        fallback=recipient.fallback_why is not None,
        headline=template.subject.format_map(shown),
        body=template.body.format_map(shown),
        occasion=occasion,
        templates=(template.subject, template.body),
        fields=shown,
    )


def with_ticket_ids(notice: Notify, opened: Mapping[str, str]) -> Notify:
    """``notice`` naming the tickets its plan opened by their ids (ticket purpose → id), e.g.
    ``tickets: laptop ticket 123``; unchanged when it lists none of them."""
    listed = notice.fields.get("tickets")
    if not listed or not any(purpose in opened for purpose in listed.split(", ")):
        return notice
    named = ", ".join(
        f"{purpose} ticket {opened[purpose]}" if purpose in opened else purpose
        for purpose in listed.split(", ")
    )
    fields = {**notice.fields, "tickets": named}
    headline, body = notice.templates
    return notice.model_copy(
        update={"fields": fields, "headline": headline.format_map(fields), "body": body.format_map(fields)}
    )


def _listed(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def notices(
    plan: Plan,
    employee: Employee | None,
    account: Account | None,
    manager: Employee | None,
    policy: Policy,
    now: datetime,
    *,
    sent: frozenset[str] = frozenset(),
) -> list[Notify]:
    """The notifications ``plan`` calls for (module docstring), without those in ``sent``."""
    if employee is None:
        return []
    found: list[Notify] = []
    creates = [a for a in plan.actions if isinstance(a, CreateAccount) and a.target == DIRECTORY]
    enable_at = timeline(employee, policy).enable_at
    new_hire = plan.event != "adopt"  # adopted staff (lifecycle.planner) are nobody's news: no welcome
    if (
        creates
        and new_hire
        and policy.notify.joiner
        and enable_at is not None
        and now < enable_at + NEW_HIRE_WINDOW
    ):
        found += _joiner(plan, creates[0], employee, manager, policy, now, enable_at)
    if account is not None and account.active and policy.notify.leaver:
        at = _leaving_at(plan, employee, policy, now)
        if at is not None:
            found += _leaver(employee, account, manager, policy, at)
    return [n for n in found if n.key not in sent]


def _leaving_at(plan: Plan, employee: Employee, policy: Policy, now: datetime) -> datetime | None:
    """When the account is disabled: now if the plan disables it, else the termination instant if it lies
    ahead (whether or not this run can book its SCHEDULE); None if no leave is planned."""
    if any(isinstance(a, DisableAccount) and a.target == DIRECTORY for a in plan.actions):
        return now
    at = timeline(employee, policy).disable_at
    end, start = employee.termination_date, employee.hire_date
    if at is None or now >= at or (end is not None and start is not None and end < start):
        return None  # no termination ahead (an old one before a rehire does not count)
    return at


def _joiner(
    plan: Plan,
    create: CreateAccount,
    employee: Employee,
    manager: Employee | None,
    policy: Policy,
    now: datetime,
    enable_at: datetime,
) -> list[Notify]:
    active_at = now if create.attributes.active else enable_at
    groups = sorted(
        a.group
        for a in plan.actions
        if isinstance(a, AddMembership | RequestApproval) and a.target == DIRECTORY
    )
    tickets = [a.request.purpose for a in plan.actions if isinstance(a, OpenTicket)]
    out = []
    for rule in policy.notify.joiner:
        recipient = _recipient(rule, employee, manager, policy)
        fields = {
            "display_name": employee.display_name,
            "employee_id": employee.employee_id,
            "user_name": create.attributes.user_name,
            "department": employee.department or "",
            "title": employee.title or "",
            "active_at": local_time(active_at, recipient.tz),
            "groups": _listed(groups),
            "tickets": _listed(tickets),
        }
        out.append(
            _notify(
                rule,
                employee_id=employee.employee_id,
                recipient=recipient,
                fields=fields,
                policy=policy,
                occasion=employee.hire_date.isoformat() if employee.hire_date else "hire",
                reason=f"joiner: tell the {rule.to} the account is created",
            )
        )
    return out


def _leaver(
    employee: Employee, account: Account, manager: Employee | None, policy: Policy, disable_at: datetime
) -> list[Notify]:
    removed = sorted(policy.managed_groups & account.groups) if policy.leaver.remove_groups else []
    days = policy.leaver.delete_after_days
    out = []
    for rule in policy.notify.leaver:
        recipient = _recipient(rule, employee, manager, policy)
        delete_at = "never (kept disabled)"
        if days is not None:
            delete_at = f"{days} days after the disable"
        fields = {
            "display_name": employee.display_name,
            "employee_id": employee.employee_id,
            "user_name": account.user_name,
            "disable_at": local_time(disable_at, recipient.tz),
            "removed": _listed(removed),
            "delete_at": delete_at,
        }
        out.append(
            _notify(
                rule,
                employee_id=employee.employee_id,
                recipient=recipient,
                fields=fields,
                policy=policy,
                occasion=employee.termination_date.isoformat() if employee.termination_date else "terminated",
                reason=f"leaver: tell the {rule.to} what is removed and when",
            )
        )
    return out


def with_notices(
    plan: Plan,
    employee: Employee | None,
    account: Account | None,
    manager: Employee | None,
    policy: Policy,
    now: datetime,
    *,
    sent: frozenset[str] = frozenset(),
) -> Plan:
    """``plan`` with its notifications appended (they run after every other step)."""
    found = notices(plan, employee, account, manager, policy, now, sent=sent)
    if not found:
        return plan
    return plan.model_copy(update={"actions": [*plan.actions, *found]})


def failure_notices(run: RunFailure, policy: Policy) -> list[Notify]:
    """The ``failure:`` notifications of a failed or crashed flow run, one per rule, keyed by the run."""
    fields = {
        "flow_name": run.flow_name,
        "flow_run_id": run.flow_run_id,
        "state": run.state,
        "message": run.message,
    }
    return [
        _notify(
            rule,
            employee_id=f"run:{run.flow_run_id}",
            recipient=_Recipient(policy.recipients[rule.to], policy.timezone_for(None)),
            fields=fields,
            policy=policy,
            occasion=run.flow_run_id,
            reason=f"the flow run entered {run.state}: tell {rule.to}",
        )
        for rule in policy.notify.failure
    ]
