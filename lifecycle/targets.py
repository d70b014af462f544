"""Planning the provisioning targets beyond the directory (policy ``targets:``). Pure, no I/O.

A person's plan covers every target; each action names its target (``Action.target``). For a target the
same planner (:func:`lifecycle.planner.plan`) runs against that target's account with the target's view of
the policy (:func:`target_policy`: its own ``birthright``, no privileged groups, no tickets), and then:

- **account_when**: only people it matches get an account there. Someone who no longer matches (a mover out of
  Engineering) is planned as a leaver *of that target*: disabled, its groups removed, deleted after
  ``leaver.delete_after_days`` — the leaver grace rules. A leaver is disabled in every target.
- **after: directory**: no account is created there unless the directory account exists or is created in the
  same plan (earlier: the applier runs the plan in order and skips the target's creation if the directory's
  failed). The userName and e-mail are the directory's, so that a person has one name everywhere.
- **correlation** (:mod:`lifecycle.correlation`): an unlinked account matching the person is adopted first
  (a :class:`~lifecycle.actions.LinkAccount`, then reconciled as theirs); a person named in a dispute gets no
  new account there.
- Schedules are left to the directory's plan (a schedule re-plans the whole person), and the manager
  reference is the directory's business: targets get no ``manager_id``.

:func:`combine` orders one person's plan: links first, then the directory's actions and then the targets'; for
a leaver the targets first and the directory last.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lifecycle.actions import (
    DIRECTORY,
    Action,
    ActionKind,
    CreateAccount,
    LinkAccount,
    Plan,
    UpdateAccount,
)
from lifecycle.birthright import rule_matches
from lifecycle.correlation import Correlated
from lifecycle.planner import History, plan
from lifecycle.policy import BirthrightRule, Policy, TargetPolicy, TicketPolicy
from models.domain import Account, Employee, EmployeeStatus

__all__ = ["TargetState", "target_policy", "in_target", "link_action", "plan_target", "combine"]

_LEFT_TO_DIRECTORY = frozenset({ActionKind.SCHEDULE, ActionKind.OPEN_TICKET, ActionKind.REQUEST_APPROVAL})


@dataclass(frozen=True)
class TargetState:
    """What one target holds for one person: their account (linked, or ``link``: an unlinked one to adopt),
    whether they are named in a dispute there, and what the ledger remembers of their account there (when
    Tenure disabled it: the deletion grace period counts from it)."""

    account: Account | None = None
    link: Correlated | None = None
    disputed: bool = False
    history: History | None = None


def target_policy(policy: Policy, target: TargetPolicy) -> Policy:
    """The policy as the planner sees it for one target: the target's birthright, no privileged groups and
    no tickets (tickets and approvals belong to the directory's plan)."""
    return policy.model_copy(
        update={"birthright": list(target.birthright), "privileged_groups": [], "tickets": TicketPolicy()}
    )


def in_target(employee: Employee, target: TargetPolicy) -> bool:
    """Whether ``account_when`` names this person (an empty match names everyone)."""
    return rule_matches(BirthrightRule(match=dict(target.account_when), groups=["-"]), employee)


def link_action(employee_id: str, target: str, found: Correlated) -> LinkAccount:
    assert found.matched_by is not None
    return LinkAccount(
        employee_id=employee_id,
        target=target,
        account_id=found.account.id,
        user_name=found.account.user_name,
        matched_by=found.matched_by,
        reason=f"adopt the account {target} already has: it matches by {found.matched_by}",
    )


def plan_target(
    employee: Employee,
    name: str,
    target: TargetPolicy,
    view: Policy,
    state: TargetState,
    now: datetime,
    *,
    directory: Plan,
    directory_account: Account | None,
) -> list[Action]:
    """The actions for target ``name`` (module docstring). ``view``: :func:`target_policy` of it;
    ``directory``: this person's directory plan; ``directory_account``: their directory account, if any."""
    actions: list[Action] = []
    account = state.account
    if state.link is not None:
        actions.append(link_action(employee.employee_id, name, state.link))
        account = state.link.account.model_copy(update={"employee_id": employee.employee_id})
    wanted = in_target(employee, target)
    if not wanted and account is None:
        return actions
    if account is None and state.disputed:
        return actions
    creating = directory_account is None and any(
        a.kind is ActionKind.CREATE_ACCOUNT for a in directory.actions
    )
    if account is None and target.after == DIRECTORY and directory_account is None and not creating:
        return actions
    person = employee
    if not wanted:  # left account_when: a leaver of this target, under the leaver grace rules
        person = employee.model_copy(update={"status": EmployeeStatus.TERMINATED})
    result = plan(person, account, view, now, history=state.history)
    names = _directory_names(directory, directory_account)
    for action in result.actions:
        kept = _for_target(action, name, names, target.after)
        if kept is not None:
            if not wanted:
                kept = kept.model_copy(
                    update={"reason": f"no longer in account_when of {name}; {kept.reason}"}
                )
            actions.append(kept)
    return actions


def _directory_names(directory: Plan, account: Account | None) -> tuple[str, str | None] | None:
    """The userName and e-mail the person has (or gets) in the directory."""
    if account is not None:
        return account.user_name, account.email
    for action in directory.actions:
        if isinstance(action, CreateAccount):
            return action.attributes.user_name, action.attributes.email
    return None


def _for_target(
    action: Action, name: str, names: tuple[str, str | None] | None, after: str | None
) -> Action | None:
    if action.kind in _LEFT_TO_DIRECTORY:
        return None
    if isinstance(action, CreateAccount):
        update: dict[str, object] = {"manager_id": None}
        if names is not None:
            update.update(user_name=names[0], email=names[1])
        attributes = action.attributes.model_copy(update=update)
        return action.model_copy(update={"attributes": attributes, "target": name, "after": after})
    if isinstance(action, UpdateAccount) and "manager_id" in action.changes:
        changes = {k: v for k, v in action.changes.items() if k != "manager_id"}
        if not changes:
            return None
        previous = {k: v for k, v in action.previous.items() if k != "manager_id"}
        reason = f"attributes changed: {', '.join(sorted(changes))}"
        return action.model_copy(
            update={"changes": changes, "previous": previous, "reason": reason, "target": name}
        )
    return action.model_copy(update={"target": name})


def combine(directory: Plan, targets: list[Action]) -> Plan:
    """One person's plan over every target (module docstring)."""
    ordered = (
        [*targets, *directory.actions] if directory.event == "leaver" else [*directory.actions, *targets]
    )
    links = [a for a in ordered if a.kind is ActionKind.LINK_ACCOUNT]
    rest = [a for a in ordered if a.kind is not ActionKind.LINK_ACCOUNT]
    return directory.with_actions([*links, *rest])
