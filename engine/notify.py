"""Telling ops about a failed run: the ``failure:`` notifications, through the one door.

The flows call :func:`tell_failure` from their ``on_failure``/``on_crashed`` hooks (``flows/notify.py``;
docs/DEPLOY.md says why the flows emit it rather than a Prefect automation). The message is a
:class:`~lifecycle.actions.Notify` keyed by the flow run id, so a hook that runs twice sends it once, and it is
audited like every other side effect.
"""

from __future__ import annotations

from connectors.protocols import Notifier
from engine.applier import Applier, ApplyReport
from engine.auditor import Auditor
from lifecycle.actions import Plan
from lifecycle.notices import RunFailure, failure_notices
from lifecycle.policy import Policy
from models.db import session_scope
from models.ledger import sent_notices

__all__ = ["tell_failure"]


async def tell_failure(
    run: RunFailure, *, policy: Policy, notifier: Notifier | None, auditor: Auditor
) -> ApplyReport:
    """Send the policy's ``failure:`` notifications for ``run`` (none twice for one run)."""
    subject = f"run:{run.flow_run_id}"
    with session_scope(auditor.database_url) as session:
        sent = sent_notices(session=session, employee_id=subject, notifying=notifier is not None)
    actions = [n for n in failure_notices(run, policy) if n.key not in sent]
    applier = Applier(auditor=auditor, notifier=notifier)
    return await applier.apply(Plan(employee_id=subject, event="none", actions=list(actions)), None)
