"""Test helpers for typed actions: a flat view of an action's payload, for compact assertions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lifecycle.actions import (
    Action,
    ActionKind,
    AddMembership,
    CreateAccount,
    DeleteAccount,
    DisableAccount,
    EnableAccount,
    OpenTicket,
    RemoveMembership,
    RequestApproval,
    Schedule,
    UpdateAccount,
)
from models.domain import AccountAttributes

__all__ = ["params", "make_action"]


def params(action: Action) -> dict[str, Any]:
    """The action's payload as plain values (what a person reads in ``tenure plan --json``)."""
    match action:
        case CreateAccount(attributes=attributes):
            return attributes.model_dump()
        case UpdateAccount(changes=changes):
            return {"changes": changes}
        case Schedule(event=event, at=at):
            return {"event": event, "at": at.isoformat()}
        case OpenTicket(request=request):
            return request.model_dump(include={"title", "body", "queue", "reference"})
        case RequestApproval(approvers=approvers, timeout_hours=hours):
            return {"approvers": list(approvers), "timeout_hours": hours}
    return {}


def make_action(kind: ActionKind, employee_id: str, target: str, reason: str = "test") -> Action:
    """A minimal action of ``kind`` on ``target`` (a user name or a group)."""
    match kind:
        case ActionKind.CREATE_ACCOUNT:
            return CreateAccount(
                employee_id=employee_id,
                reason=reason,
                attributes=AccountAttributes(user_name=target, employee_id=employee_id),
            )
        case ActionKind.UPDATE_ACCOUNT:
            return UpdateAccount(employee_id=employee_id, reason=reason, user_name=target, changes={})
        case ActionKind.ENABLE_ACCOUNT:
            return EnableAccount(employee_id=employee_id, reason=reason, user_name=target)
        case ActionKind.DISABLE_ACCOUNT:
            return DisableAccount(employee_id=employee_id, reason=reason, user_name=target)
        case ActionKind.DELETE_ACCOUNT:
            return DeleteAccount(employee_id=employee_id, reason=reason, user_name=target)
        case ActionKind.ADD_MEMBERSHIP:
            return AddMembership(employee_id=employee_id, reason=reason, group=target)
        case ActionKind.REMOVE_MEMBERSHIP:
            return RemoveMembership(employee_id=employee_id, reason=reason, group=target)
        case ActionKind.SCHEDULE:
            return Schedule(
                employee_id=employee_id, reason=reason, event="disable", at=datetime(2026, 1, 1, tzinfo=UTC)
            )
    raise ValueError(f"make_action does not build {kind}")


async def record_approval(
    database_url: str, employee_id: str, group: str, *, at: datetime, by: str = "lead"
) -> None:
    """Record an approval of ``group`` for ``employee_id`` through the one door, as ``tenure approve`` does."""
    from engine.applier import Applier
    from engine.auditor import Auditor
    from lifecycle.actions import Plan, RecordApproval

    approval = RecordApproval(
        employee_id=employee_id, group=group, decided_by=by, decided_at=at, reason="test"
    )
    report = await Applier(auditor=Auditor(database_url, actor="test")).apply(
        Plan(employee_id=employee_id, event="none", actions=[approval]), None
    )
    assert report.ok, report.failed


def seed_audit(database_url: str, **fields: Any) -> None:
    """Write one audit row directly (test set-up of evidence, e.g. for the KPIs)."""
    from engine.auditor import Auditor
    from models.audit import record_many
    from models.db import session_scope

    with session_scope(database_url) as session:
        record_many(session=session, events=[Auditor(database_url, actor="test").event(**fields)])
