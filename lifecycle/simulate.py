"""A pure, in-memory "apply": what an account looks like after a plan. No I/O.

Used by the property tests as the model of the apply step, and by the dry-run to show a plan's effect.
OPEN_TICKET, REQUEST_APPROVAL and SCHEDULE leave the account as it is (they act elsewhere or later).
"""

from __future__ import annotations

from lifecycle.actions import (
    ACCOUNT_KINDS,
    Action,
    AddMembership,
    CreateAccount,
    DeleteAccount,
    DisableAccount,
    EnableAccount,
    Plan,
    RemoveMembership,
    UpdateAccount,
)
from models.domain import Account

__all__ = ["SimulationError", "apply_action", "apply_plan"]


class SimulationError(ValueError):
    """The plan cannot apply to this account (e.g. CREATE when one exists): a planner bug."""


def apply_action(account: Account | None, action: Action) -> Account | None:
    """The account after ``action``; ``None`` means no account (not yet created, or deleted)."""
    if isinstance(action, CreateAccount):
        if account is not None:
            raise SimulationError(f"{action.key}: account already exists")
        return Account(**action.attributes.model_dump(), id=f"sim-{action.employee_id}")
    if action.kind not in ACCOUNT_KINDS:
        return account  # tickets, approvals, schedules, decisions act elsewhere or later
    if account is None:
        raise SimulationError(f"{action.key}: no account to act on")
    match action:
        case DeleteAccount():
            return None
        case UpdateAccount(changes=changes):
            return account.model_copy(update=changes)
        case EnableAccount() | DisableAccount():
            return account.model_copy(update={"active": isinstance(action, EnableAccount)})
        case AddMembership(group=group):
            return account.model_copy(update={"groups": account.groups | {group}})
        case RemoveMembership(group=group):
            return account.model_copy(update={"groups": account.groups - {group}})
    raise SimulationError(f"unknown action kind {action.kind!r}")  # pragma: no cover


def apply_plan(account: Account | None, plan: Plan) -> Account | None:
    """Apply every action of ``plan`` in order."""
    for action in plan.actions:
        account = apply_action(account, action)
    return account
