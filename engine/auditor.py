"""Who acts and in which run: the actor and correlation id every audit row of a run carries.

An :class:`Auditor` builds audit events; it writes none. The applier (:mod:`engine.applier`) is the only writer.
:meth:`Auditor.event` scrubs every event's ``reason`` and ``details`` of every registered secret
(:func:`connectors.redaction.scrub`): the chain is append-only, so what reaches it stays for good.
The flows pass the Prefect flow run's identity (:func:`flows.orchestration.run_identity`); everywhere else the
actor is the CLI user and each invocation gets its own ``cli-run:<uuid>`` correlation id.
"""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from connectors.redaction import scrub, scrub_data
from models.audit import AuditEventBase, Outcome

__all__ = ["Auditor", "cli_identity"]


def cli_identity() -> tuple[str, str]:
    """(actor, correlation id) of a CLI invocation: ``cli:<user>`` and a fresh ``cli-run:<uuid>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}", f"cli-run:{uuid.uuid4()}"


class Auditor:
    """The run's audit identity and database; :meth:`event` fills the actor and correlation id in."""

    def __init__(
        self, database_url: str, *, actor: str | None = None, correlation_id: str | None = None
    ) -> None:
        default_actor, default_correlation = cli_identity()
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
            reason=scrub(reason),
            details=scrub_data(details or {}),
            correlation_id=self.correlation_id,
            idempotency_key=idempotency_key,
        )
