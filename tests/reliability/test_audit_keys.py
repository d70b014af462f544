"""Regression: outside a Prefect flow run (``tenure apply``, ``tenure sync``) the audit idempotency key of an applied
action used to be ``{employee}:{kind}:{target}:cli:applied`` — the same for the same change made again in a later
run (enable → disable → enable on a rehire), so the later change returned the earlier row and was never audited.
Each CLI run now has its own correlation id (``cli-run:<uuid>``)."""

from __future__ import annotations

from unittest.mock import AsyncMock

from sqlmodel import select

from engine.applier import Applier
from engine.auditor import Auditor
from lifecycle.actions import DisableAccount, EnableAccount, Plan
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from models.domain import Account


async def test_same_change_in_two_cli_runs_is_audited_twice(fresh_sqlite_url: str) -> None:
    """Enabling an account, and enabling it again in a later CLI run after it was disabled, leaves two rows."""
    account = Account(id="a1", user_name="kai.n", employee_id="E1", active=False)
    idp = AsyncMock()
    idp.source = "scim"
    enable = EnableAccount(employee_id="E1", user_name="kai.n", reason="rehired")
    disable = DisableAccount(employee_id="E1", user_name="kai.n", reason="left")
    for actions in ([enable], [disable], [enable]):  # hire, leave, rehire: three separate CLI runs
        applier = Applier(idp=idp, ticketing=None, auditor=Auditor(fresh_sqlite_url, correlation_id=None))
        report = await applier.apply(
            Plan(employee_id="E1", event="rehire" if actions[0] is enable else "leaver", actions=actions),
            account,
        )
        assert report.ok
    with session_scope(fresh_sqlite_url) as session:
        rows = session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "idp.user.enable", AuditEvent.outcome == Outcome.APPLIED.value
            )
        ).all()
    assert idp.reactivate_user.await_count == 2
    assert len(rows) == 2
