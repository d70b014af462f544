"""What the planner decides: a :class:`Plan` of :class:`Action` values for one employee. Pure data.

An action names *what* should happen, never *how*; the apply step maps each kind to a connector call
and records it in the ledger under :attr:`Action.key`, which is stable across runs so that re-planning
the same situation yields the same keys and nothing is done twice.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActionKind", "Action", "Plan", "PlanEvent", "ACCOUNT_KINDS", "SCHEDULE_EVENTS"]

PlanEvent = Literal["joiner", "mover", "leaver", "rehire", "none"]

# Events a SCHEDULE action can name. "create" is the pre-hire creation before the prehire window opens.
SCHEDULE_EVENTS = frozenset({"create", "enable", "disable", "delete"})


class ActionKind(str, enum.Enum):
    CREATE_ACCOUNT = "create_account"
    UPDATE_ACCOUNT = "update_account"
    ENABLE_ACCOUNT = "enable_account"
    DISABLE_ACCOUNT = "disable_account"
    DELETE_ACCOUNT = "delete_account"
    ADD_MEMBERSHIP = "add_membership"
    REMOVE_MEMBERSHIP = "remove_membership"
    OPEN_TICKET = "open_ticket"
    REQUEST_APPROVAL = "request_approval"
    SCHEDULE = "schedule"


# Kinds that change the identity provider (account state or group membership).
ACCOUNT_KINDS = frozenset(
    {
        ActionKind.CREATE_ACCOUNT,
        ActionKind.UPDATE_ACCOUNT,
        ActionKind.ENABLE_ACCOUNT,
        ActionKind.DISABLE_ACCOUNT,
        ActionKind.DELETE_ACCOUNT,
        ActionKind.ADD_MEMBERSHIP,
        ActionKind.REMOVE_MEMBERSHIP,
    }
)


class Action(BaseModel):
    """One step of a plan.

    ``target``: the account user_name (account actions), the group name (memberships, approvals), the
    ticket purpose (OPEN_TICKET) or the scheduled event name (SCHEDULE).
    ``params``: CREATE_ACCOUNT → the AccountAttributes as a dict (``active`` False before the hire day);
    UPDATE_ACCOUNT → ``{"changes": {...}}``; OPEN_TICKET → ``{"title", "body", "queue", "reference"}``;
    REQUEST_APPROVAL → ``{"approvers", "timeout_hours"}``; SCHEDULE → ``{"event", "at"}`` with ``at`` an
    ISO 8601 UTC instant. ``reason`` is for humans and carries no personal data beyond ids and group names.
    """

    model_config = ConfigDict(frozen=True)

    kind: ActionKind
    employee_id: str
    target: str
    reason: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable ledger key, ``{employee_id}:{kind}:{target}``.

        A SCHEDULE also carries its instant (``...:schedule:enable:2025-03-01T00:00:00+00:00``): if
        HR moves a date, the new schedule is a new ledger entry instead of being taken as already done.
        An OPEN_TICKET carries its occasion (the last part of its reference), so a ticket still owed from an
        earlier occasion is not overwritten by the next one.
        """
        base = f"{self.employee_id}:{self.kind.value}:{self.target}"
        if self.kind is ActionKind.SCHEDULE:
            return f"{base}:{self.params.get('at', '')}"
        if self.kind is ActionKind.OPEN_TICKET:  # one entry per occasion (the reference's last part)
            return f"{base}:{str(self.params.get('reference', '')).rsplit(':', 1)[-1]}"
        return base


class Plan(BaseModel):
    """The ordered actions for one employee; ``skipped_reason`` says why a plan is empty on purpose."""

    employee_id: str
    event: PlanEvent
    actions: list[Action] = Field(default_factory=list)
    skipped_reason: str | None = None

    def of_kind(self, *kinds: ActionKind) -> list[Action]:
        """The actions of the given kinds, in plan order."""
        return [a for a in self.actions if a.kind in kinds]

    @property
    def keys(self) -> list[str]:
        return [a.key for a in self.actions]
