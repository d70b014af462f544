"""Writing audit events from flows, the webhook and the CLI, linked to the Prefect flow run when inside one."""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterable
from typing import Any

from models.audit import AuditEvent, AuditEventBase, Outcome, record_many
from models.db import session_scope

__all__ = ["Auditor", "run_context"]


def run_context() -> tuple[str, str]:
    """(actor, correlation id): the Prefect flow run when inside one, else the CLI user and a fresh run id
    (``cli-run:<uuid>``) so that each CLI invocation's changes are told apart."""
    try:
        from prefect.runtime import deployment, flow_run

        run_id = flow_run.id
    except Exception:  # noqa: BLE001 - prefect.runtime raises various errors outside a run
        run_id = None
    if run_id:
        name = deployment.name if deployment.id else None
        return (f"deployment:{name}" if name else f"flow-run:{run_id}"), str(run_id)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}", f"cli-run:{uuid.uuid4()}"


class Auditor:
    """Appends events to the audit chain with the run's actor and correlation id filled in."""

    def __init__(
        self, database_url: str, *, actor: str | None = None, correlation_id: str | None = None
    ) -> None:
        default_actor, default_correlation = run_context()
        self.database_url = database_url
        self.actor = actor or default_actor
        self.correlation_id = correlation_id or default_correlation

    def event(
        self,
        *,
        action: str,
        target_system: str,
        outcome: Outcome,
        reason: str = "",
        target_id: str | None = None,
        employee_id: str | None = None,
        details: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AuditEventBase:
        return AuditEventBase(
            actor=self.actor,
            action=action,
            target_system=target_system,
            target_id=target_id,
            employee_id=employee_id,
            outcome=outcome,
            reason=reason,
            details=details or {},
            correlation_id=self.correlation_id,
            idempotency_key=idempotency_key,
        )

    def record(self, **fields: Any) -> AuditEvent:
        return self.record_many([self.event(**fields)])[0]

    def record_many(self, events: Iterable[AuditEventBase]) -> list[AuditEvent]:
        with session_scope(self.database_url) as session:
            return record_many(session=session, events=events)
