"""A pure, in-memory "apply": what an account looks like after a plan. No I/O.

Used by the property tests as the model of the apply step, and by the dry-run to show a plan's effect.
OPEN_TICKET, REQUEST_APPROVAL and SCHEDULE leave the account as it is (they act elsewhere or later).
"""

from __future__ import annotations

from lifecycle.actions import Action, ActionKind, Plan
from models.domain import Account

__all__ = ["SimulationError", "apply_action", "apply_plan"]


class SimulationError(ValueError):
    """The plan cannot apply to this account (e.g. CREATE when one exists): a planner bug."""


def apply_action(account: Account | None, action: Action) -> Account | None:
    """The account after ``action``; ``None`` means no account (not yet created, or deleted)."""
    kind = action.kind
    if kind is ActionKind.CREATE_ACCOUNT:
        if account is not None:
            raise SimulationError(f"{action.key}: account already exists")
        return Account.model_validate({**action.params, "id": f"sim-{action.employee_id}"})
    if kind in {ActionKind.OPEN_TICKET, ActionKind.REQUEST_APPROVAL, ActionKind.SCHEDULE}:
        return account
    if account is None:
        raise SimulationError(f"{action.key}: no account to act on")
    if kind is ActionKind.DELETE_ACCOUNT:
        return None
    if kind is ActionKind.UPDATE_ACCOUNT:
        return Account.model_validate({**account.model_dump(), **action.params["changes"]})
    if kind in {ActionKind.ENABLE_ACCOUNT, ActionKind.DISABLE_ACCOUNT}:
        return account.model_copy(update={"active": kind is ActionKind.ENABLE_ACCOUNT})
    if kind is ActionKind.ADD_MEMBERSHIP:
        return account.model_copy(update={"groups": account.groups | {action.target}})
    if kind is ActionKind.REMOVE_MEMBERSHIP:
        return account.model_copy(update={"groups": account.groups - {action.target}})
    raise SimulationError(f"unknown action kind {kind!r}")  # pragma: no cover


def apply_plan(account: Account | None, plan: Plan) -> Account | None:
    """Apply every action of ``plan`` in order."""
    for action in plan.actions:
        account = apply_action(account, action)
    return account
