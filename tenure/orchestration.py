"""Prefect glue for the apply step: future-dated actions as scheduled flow runs, approvals as a pause form."""

from __future__ import annotations

import re
from datetime import datetime

from prefect.input import RunInput

from connectors.errors import ConnectorError
from lifecycle.actions import Action

__all__ = ["RECONCILE_DEPLOYMENT", "ApprovalDecision", "schedule_reconcile", "approve_in_ui", "in_deployment"]

RECONCILE_DEPLOYMENT = "reconcile-employee/tenure"


def in_deployment() -> bool:
    """True when this flow run was started from a deployment (so scheduled follow-ups have one to use)."""
    from prefect.runtime import deployment

    return bool(deployment.id)


async def schedule_reconcile(action: Action) -> str:
    """Book a run of the reconcile deployment at ``action.params['at']``; the ledger key is the idempotency
    key, so planning the same future step twice books one run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    at = datetime.fromisoformat(action.params["at"])
    event = action.params.get("event", action.target)
    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(RECONCILE_DEPLOYMENT)
        except ObjectNotFound:
            raise ConnectorError(
                f"deployment {RECONCILE_DEPLOYMENT} not found: run `prefect deploy --all`", source="prefect"
            ) from None
        run = await client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"employee_id": action.employee_id},
            state=Scheduled(scheduled_time=at),
            idempotency_key=f"tenure:{action.key}",
            name=f"{event}-{action.employee_id}",
            tags=["tenure", "scheduled", event],
        )
    return str(run.id)


class ApprovalDecision(RunInput):
    """The form an approver fills in the Prefect UI to grant or deny a privileged group."""

    approve: bool = False
    approver: str = ""
    reason: str = ""


def _run_input_key(text: str) -> str:
    """Prefect run-input keys allow lowercase letters, numbers and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


async def approve_in_ui(action: Action) -> tuple[bool, str, str]:
    """Pause this flow run until an approver answers in the Prefect UI; no answer in time = denied."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    hours = float(action.params.get("timeout_hours", 72))
    try:
        decision = await pause_flow_run(
            wait_for_input=ApprovalDecision.with_initial_data(
                description=f"Grant privileged group **{action.target}** to employee `{action.employee_id}`? "
                f"Approvers: {', '.join(action.params.get('approvers', [])) or 'any'}."
            ),
            timeout=int(hours * 3600),
            key=_run_input_key(f"approval-{action.employee_id}-{action.target}"),
        )
    except FlowPauseTimeout:
        return False, "timeout", f"no decision within {hours:g} h"
    if not decision.approver:
        return False, "unknown", "the form named no approver"
    return decision.approve, decision.approver, decision.reason
