"""What the planner decides: a :class:`Plan` of typed actions for one employee. Pure data.

An action names *what* should happen, never *how*; the applier (:mod:`engine.applier`) dispatches on its type
with ``match`` and records it in the ledger under :attr:`key`, which is stable across runs so that re-planning
the same situation yields the same keys and nothing is done twice.

:data:`Action` is a discriminated union on ``kind`` (an :class:`ActionKind`): the lifecycle actions the
planner makes (account state, memberships, tickets, approvals, schedules) and the ones the access review makes
(ticket comments and closing, review decisions, recorded approvals). Every field is typed: nothing downstream
parses a string back into a date, a key or a model.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from models.domain import AccountAttributes, TicketRequest

__all__ = [
    "DIRECTORY",
    "ActionKind",
    "ScheduleEvent",
    "PlanEvent",
    "CreateAccount",
    "UpdateAccount",
    "EnableAccount",
    "DisableAccount",
    "DeleteAccount",
    "LinkAccount",
    "AddMembership",
    "RemoveMembership",
    "OpenTicket",
    "CommentTicket",
    "CloseTicket",
    "RequestApproval",
    "Schedule",
    "RecordApproval",
    "RecordReviewDecision",
    "Notify",
    "AdoptEmployee",
    "describe_changes",
    "Action",
    "ACTION_ADAPTER",
    "ACCOUNT_KINDS",
    "SIDE_EFFECT_KINDS",
    "Plan",
]

DIRECTORY = "directory"  # the target TENURE_IDP__* configures
PlanEvent = Literal["joiner", "mover", "leaver", "rehire", "adopt", "none"]
# "create" is the pre-hire creation before the prehire window opens; the others re-plan at a lifecycle instant.
ScheduleEvent = Literal["create", "enable", "disable", "delete"]


class ActionKind(str, enum.Enum):
    CREATE_ACCOUNT = "create_account"
    UPDATE_ACCOUNT = "update_account"
    ENABLE_ACCOUNT = "enable_account"
    DISABLE_ACCOUNT = "disable_account"
    DELETE_ACCOUNT = "delete_account"
    LINK_ACCOUNT = "link"
    ADD_MEMBERSHIP = "add_membership"
    REMOVE_MEMBERSHIP = "remove_membership"
    OPEN_TICKET = "open_ticket"
    COMMENT_TICKET = "comment_ticket"
    CLOSE_TICKET = "close_ticket"
    REQUEST_APPROVAL = "request_approval"
    SCHEDULE = "schedule"
    RECORD_APPROVAL = "record_approval"
    RECORD_REVIEW_DECISION = "record_review_decision"
    NOTIFY = "notify"
    ADOPT = "adopt"


# Kinds whose target is the person's own account (a user name built from their name).
_ON_THE_PERSON = frozenset(
    {
        ActionKind.CREATE_ACCOUNT,
        ActionKind.UPDATE_ACCOUNT,
        ActionKind.ENABLE_ACCOUNT,
        ActionKind.DISABLE_ACCOUNT,
        ActionKind.DELETE_ACCOUNT,
        ActionKind.ADOPT,
    }
)


class _Step(BaseModel):
    """Fields every action has. ``reason`` is for humans and carries no personal data beyond ids and groups.
    ``target`` names the provisioning target the action is for (:data:`DIRECTORY`, or a ``targets:`` entry of
    the policy); tickets, schedules, approvals and decisions belong to the directory."""

    model_config = ConfigDict(frozen=True)

    employee_id: str
    reason: str = Field(min_length=1)
    target: str = DIRECTORY

    @property
    def subject(self) -> str:
        """What the action acts on: a user name, a group, a ticket purpose or id, a schedule event."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        """Stable ledger key, ``{employee_id}:{kind}:{subject}``, with ``@{target}`` for a target other than
        the directory (some kinds add what makes an occasion)."""
        where = "" if self.target == DIRECTORY else f"@{self.target}"
        return f"{self.employee_id}:{self.kind.value}:{self.subject}{where}"  # type: ignore[attr-defined]

    @property
    def shown_subject(self) -> str:
        """What the action acts on as the UI may show it: the employee id for the person's account (the
        subject is then a user name made of their name), else ``{employee_id}-{subject}`` (a group, a ticket
        purpose, a schedule event)."""
        if self.kind in _ON_THE_PERSON:  # type: ignore[attr-defined]
            return self.employee_id
        return f"{self.employee_id}-{self.subject}"

    @property
    def step_name(self) -> str:
        """The step's task-run name, ids only: ``create_account-E00002``, ``add_membership-E00002-sales``
        (``@github`` added for a target other than the directory)."""
        where = "" if self.target == DIRECTORY else f"@{self.target}"
        return f"{self.kind.value}-{self.shown_subject}{where}"  # type: ignore[attr-defined]


class _OnAccount(_Step):
    user_name: str

    @property
    def subject(self) -> str:
        return self.user_name


class _OnGroup(_Step):
    group: str

    @property
    def subject(self) -> str:
        return self.group


class CreateAccount(_Step):
    """Create the account with ``attributes`` (``active`` False before the hire day). ``after``: the target
    whose account must exist first (``directory`` for a target with ``after: directory``): if creating that
    one failed in this plan, this creation is skipped."""

    kind: Literal[ActionKind.CREATE_ACCOUNT] = ActionKind.CREATE_ACCOUNT
    attributes: AccountAttributes
    after: str | None = None

    @property
    def subject(self) -> str:
        return self.attributes.user_name


class UpdateAccount(_OnAccount):
    """Write only ``changes`` (attribute → new value); ``previous`` holds the old values, for people to read."""

    kind: Literal[ActionKind.UPDATE_ACCOUNT] = ActionKind.UPDATE_ACCOUNT
    changes: dict[str, str | None]
    previous: dict[str, str | None] = Field(default_factory=dict)


class EnableAccount(_OnAccount):
    kind: Literal[ActionKind.ENABLE_ACCOUNT] = ActionKind.ENABLE_ACCOUNT


class DisableAccount(_OnAccount):
    kind: Literal[ActionKind.DISABLE_ACCOUNT] = ActionKind.DISABLE_ACCOUNT


class DeleteAccount(_OnAccount):
    kind: Literal[ActionKind.DELETE_ACCOUNT] = ActionKind.DELETE_ACCOUNT


class LinkAccount(_Step):
    """Adopt ``account_id``, an account the target already had that matches this employee by ``matched_by``
    (:mod:`lifecycle.correlation`): write the employee id onto it, so that it is this employee's account from
    now on and is reconciled like one (no second account is ever created)."""

    kind: Literal[ActionKind.LINK_ACCOUNT] = ActionKind.LINK_ACCOUNT
    account_id: str
    user_name: str
    matched_by: Literal["employee_id", "email", "user_name"]

    @property
    def subject(self) -> str:
        return self.account_id


class AddMembership(_OnGroup):
    kind: Literal[ActionKind.ADD_MEMBERSHIP] = ActionKind.ADD_MEMBERSHIP


class RemoveMembership(_OnGroup):
    kind: Literal[ActionKind.REMOVE_MEMBERSHIP] = ActionKind.REMOVE_MEMBERSHIP


class OpenTicket(_Step):
    """Open ``request`` (idempotent by its reference). ``occasion`` (hire date, termination date, role hash,
    campaign) makes a rehire or a second move a new ledger entry instead of one already done."""

    kind: Literal[ActionKind.OPEN_TICKET] = ActionKind.OPEN_TICKET
    request: TicketRequest
    occasion: str

    @property
    def subject(self) -> str:
        return self.request.purpose

    @property
    def key(self) -> str:
        return f"{super().key}:{self.occasion}"


class CommentTicket(_Step):
    """Add ``text`` to ticket ``ticket_id``; ``purpose`` (e.g. ``remind:<campaign>``) makes it once per occasion."""

    kind: Literal[ActionKind.COMMENT_TICKET] = ActionKind.COMMENT_TICKET
    ticket_id: str
    purpose: str
    text: str

    @property
    def subject(self) -> str:
        return f"{self.ticket_id}:{self.purpose}"


class CloseTicket(_Step):
    kind: Literal[ActionKind.CLOSE_TICKET] = ActionKind.CLOSE_TICKET
    ticket_id: str

    @property
    def subject(self) -> str:
        return self.ticket_id


class RequestApproval(_OnGroup):
    """Ask ``approvers`` to grant privileged ``group``; no answer within ``timeout_hours`` means denied."""

    kind: Literal[ActionKind.REQUEST_APPROVAL] = ActionKind.REQUEST_APPROVAL
    approvers: tuple[str, ...] = ()
    timeout_hours: float = 72.0


class Schedule(_Step):
    """Re-plan this employee at ``at`` (a Prefect flow run). A moved date is a new key, so a new booking."""

    kind: Literal[ActionKind.SCHEDULE] = ActionKind.SCHEDULE
    event: ScheduleEvent
    at: AwareDatetime

    @property
    def subject(self) -> str:
        return self.event

    @property
    def key(self) -> str:
        return f"{super().key}:{self.at.isoformat()}"


class RecordApproval(_OnGroup):
    """Record that ``decided_by`` approved ``group`` for this employee (a grant in the ledger)."""

    kind: Literal[ActionKind.RECORD_APPROVAL] = ActionKind.RECORD_APPROVAL
    decided_by: str = Field(min_length=1)
    decided_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"{super().key}:{self.decided_at.isoformat()}"


class RecordReviewDecision(_Step):
    """A reviewer's keep or revoke of one campaign item. A keep of a membership re-certifies the grant until
    ``recertify_until``; a revoke withdraws it: the planner does not grant it again without a new approval."""

    kind: Literal[ActionKind.RECORD_REVIEW_DECISION] = ActionKind.RECORD_REVIEW_DECISION
    campaign_id: str
    item_id: str
    decision: Literal["keep", "revoke"]
    decided_by: str = Field(min_length=1)
    decided_at: AwareDatetime
    group: str | None = None  # the membership the item is about (None: an account finding)
    account_id: str
    flagged: bool = False
    recertify_until: datetime | None = None
    recommended: str | None = None  # keep, revoke or none: the item's recommendation (audited)

    @property
    def subject(self) -> str:
        return f"{self.campaign_id}:{self.item_id}"


class Notify(_Step):
    """Send ``headline``/``body`` to ``to`` (the ``audience`` of the policy's rule, resolved by
    :mod:`lifecycle.notices`). ``occasion`` (hire date, termination date, flow run) makes it once per occasion;
    ``fallback``: the audience (a manager) resolved to nobody, so the policy's fallback recipient is told."""

    kind: Literal[ActionKind.NOTIFY] = ActionKind.NOTIFY
    template: str
    audience: str
    to: str = Field(repr=False)
    recipient_id: str | None = None  # the manager's employee id, where the audience is a manager
    fallback: bool = False
    headline: str = Field(repr=False)  # the e-mail's Subject (``subject`` is what every action acts on)
    body: str = Field(repr=False)
    occasion: str
    # what headline and body were rendered from, so the applier can name the tickets this plan opened
    templates: tuple[str, str] = Field(default=("", ""), repr=False)
    fields: dict[str, str] = Field(default_factory=dict, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.template}:{self.audience}"

    @property
    def key(self) -> str:
        return f"{super().key}:{self.occasion}"


class AdoptEmployee(_Step):
    """Take over someone the company already employs (hired before ``adopt_before``) on their first run: the
    account ``account_id`` (None: created in this plan) is linked to the employee id, no joiner ticket opens."""

    kind: Literal[ActionKind.ADOPT] = ActionKind.ADOPT
    adopt_before: date
    account_id: str | None = None

    @property
    def subject(self) -> str:
        return self.account_id or "new-account"


# HR fields whose old and new values a change description shows; others (names, e-mail) are only named.
SHOWN_VALUES = ("department", "title", "manager_id", "active")


def describe_changes(changes: dict[str, str | None], previous: dict[str, str | None]) -> str:
    """``attributes changed: department: Sales → Finance; display_name changed`` — HR fields old → new,
    personal data (names, e-mail addresses) named only, so the text is fit for artifacts and the audit."""

    def shown(value: str | None) -> str:
        return "(none)" if value in (None, "") else str(value)

    parts = [
        f"{name}: {shown(previous.get(name))} → {shown(changes[name])}"
        if name in SHOWN_VALUES
        else f"{name} changed"
        for name in sorted(changes)
    ]
    return "attributes changed: " + "; ".join(parts)


Action = Annotated[
    CreateAccount
    | UpdateAccount
    | EnableAccount
    | DisableAccount
    | DeleteAccount
    | LinkAccount
    | AddMembership
    | RemoveMembership
    | OpenTicket
    | CommentTicket
    | CloseTicket
    | RequestApproval
    | Schedule
    | RecordApproval
    | RecordReviewDecision
    | Notify
    | AdoptEmployee,
    Field(discriminator="kind"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)

# Kinds that change the identity provider (account state or group membership).
ACCOUNT_KINDS = frozenset(
    {
        ActionKind.CREATE_ACCOUNT,
        ActionKind.UPDATE_ACCOUNT,
        ActionKind.ENABLE_ACCOUNT,
        ActionKind.DISABLE_ACCOUNT,
        ActionKind.DELETE_ACCOUNT,
        ActionKind.LINK_ACCOUNT,
        ActionKind.ADD_MEMBERSHIP,
        ActionKind.REMOVE_MEMBERSHIP,
    }
)
# Kinds the account state cannot show were done: the ledger alone remembers them.
SIDE_EFFECT_KINDS = frozenset(
    {ActionKind.OPEN_TICKET, ActionKind.REQUEST_APPROVAL, ActionKind.SCHEDULE, ActionKind.NOTIFY}
)


class Plan(BaseModel):
    """The ordered actions for one employee; ``skipped_reason`` says why a plan is empty on purpose."""

    employee_id: str
    event: PlanEvent
    actions: list[Action] = Field(default_factory=list)
    skipped_reason: str | None = None

    def with_actions(self, actions: list[Action]) -> Plan:
        """This plan with ``actions`` instead; the plan itself when they are its very actions in the same order
        (a full sync plans thousands of employees, most of whom need nothing)."""
        if len(actions) == len(self.actions) and all(
            a is b for a, b in zip(actions, self.actions, strict=True)
        ):
            return self
        return self.model_copy(update={"actions": actions})

    def of_kind(self, *kinds: ActionKind) -> list[Action]:
        """The actions of the given kinds, in plan order."""
        return [a for a in self.actions if a.kind in kinds]

    @property
    def keys(self) -> list[str]:
        return [a.key for a in self.actions]

    def for_target(self, target: str) -> list[Action]:
        """The actions for one provisioning target, in plan order."""
        return [a for a in self.actions if a.target == target]
