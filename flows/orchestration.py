"""Prefect glue for the engine: the run's audit identity, future steps as scheduled flow runs, approvals as a form.

**Approvals without holding a worker.** In a deployed run a privileged group's approval *suspends* the flow
run (``suspend_flow_run`` with the :class:`ApprovalDecision` form): the process exits and frees the worker;
answering the form in the UI reschedules the run, which starts again from the top. Everything it did before
the suspension is in the ledger, so the re-run plans only what is left — the approval request itself, whose
form answer Prefect keeps under the same key and hands back at once — and repeats nothing. Outside a
deployment (a flow called directly, tests) a suspended run could not be resumed, so the run *pauses* in
process instead (``pause_flow_run``), for at most the policy's ``approval_timeout_hours``.
"""

from __future__ import annotations

import re
from typing import Any

from prefect.input import RunInput

from connectors.errors import ConnectorError
from lifecycle.actions import RequestApproval, Schedule

__all__ = [
    "RECONCILE_DEPLOYMENT",
    "ApprovalDecision",
    "run_identity",
    "schedule_reconcile",
    "approve_in_ui",
    "in_deployment",
]

RECONCILE_DEPLOYMENT = "reconcile-employee/reconcile-employee"


def run_identity() -> dict[str, Any]:
    """``actor`` and ``correlation_id`` for :class:`engine.auditor.Auditor` inside a flow run (the deployment,
    or the flow run, and the flow run id); empty outside one, so the Auditor falls back to the CLI identity."""
    from prefect.runtime import deployment, flow_run

    run_id = flow_run.id
    if not run_id:
        return {}
    name = deployment.name if deployment.id else None
    return {"actor": f"deployment:{name}" if name else f"flow-run:{run_id}", "correlation_id": str(run_id)}


def in_deployment() -> bool:
    """True when this flow run was started from a deployment (so scheduled follow-ups have one to use)."""
    from prefect.runtime import deployment

    return bool(deployment.id)


async def schedule_reconcile(action: Schedule) -> str:
    """Book a run of the reconcile deployment at ``action.at``; the ledger key is the idempotency key, so
    planning the same future step twice books one run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

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
            state=Scheduled(scheduled_time=action.at),
            idempotency_key=f"tenure:{action.key}",
            name=f"{action.event}-{action.employee_id}",
            tags=["tenure", "scheduled", action.event],
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


async def approve_in_ui(action: RequestApproval) -> tuple[bool, str, str]:
    """Wait for an approver's answer in the Prefect UI (module docstring); no answer in time = denied."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    form = ApprovalDecision.with_initial_data(
        description=f"Grant privileged group **{action.group}** to employee `{action.employee_id}`? "
        f"Approvers: {', '.join(action.approvers) or 'any'}."
    )
    timeout = int(action.timeout_hours * 3600)
    key = _run_input_key(f"approval-{action.employee_id}-{action.group}")
    try:
        if in_deployment():
            decision = await suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
        else:
            decision = await pause_flow_run(wait_for_input=form, timeout=timeout, key=key)
    except FlowPauseTimeout:
        return False, "timeout", f"no decision within {action.timeout_hours:g} h"
    if not decision.approver:
        return False, "unknown", "the form named no approver"
    return decision.approve, decision.approver, decision.reason
