"""Ops hear about a failed run: an ``on_failure``/``on_crashed`` hook on every flow sends the policy's
``failure:`` notifications through the notifier (docs/DEPLOY.md "Failure notifications" says why a hook and
not a Prefect automation). A notification that cannot be sent is audited as failed; unreadable settings or
policy are logged, and nothing is sent."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from connectors.redaction import scrub
from engine.auditor import Auditor
from engine.notify import tell_failure
from lifecycle.notices import RunFailure
from lifecycle.policy import PolicyError, load_policy
from tenure.compose import open_notifier
from tenure.settings import load_settings

__all__ = ["tell_ops", "FAILURE_HOOKS"]

log = logging.getLogger("tenure.notify")
MAX_MESSAGE = 500


async def tell_ops(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook: the run ended Failed or Crashed; tell the ``failure:`` recipients (ids only)."""
    try:
        settings = load_settings()
        policy = load_policy(settings.policy_file)
    except (PolicyError, ValidationError):
        log.warning("no failure notification: the settings or the policy file cannot be read")
        return
    if not policy.notify.failure:
        return
    auditor = Auditor(settings.database_url, actor=f"flow-run:{flow_run.id}", correlation_id=str(flow_run.id))
    async with open_notifier(settings) as notifier:  # the settings' secrets are registered: scrub the message
        run = RunFailure(
            flow_name=str(flow.name),
            flow_run_id=str(flow_run.id),
            state=str(state.name),
            message=scrub(str(state.message or ""))[:MAX_MESSAGE],
        )
        report = await tell_failure(run, policy=policy, notifier=notifier, auditor=auditor)
    if not report.ok:
        log.warning("the failure notification of flow run %s was not sent", flow_run.id)


FAILURE_HOOKS: dict[str, Any] = {"on_failure": [tell_ops], "on_crashed": [tell_ops]}
