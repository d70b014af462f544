"""The joiner, mover, leaver and reconcile_employee flows (one employee each, async, named runs)."""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed, State

from connectors.errors import ConnectorError
from connectors.redaction import scrub
from engine.applier import ActionResult, Applier, ApplyReport, Step
from engine.auditor import Auditor
from engine.preflight import MissingGroups
from engine.reconcile import reconcile
from flows.anchoring import publish_checkpoint
from flows.notify import FAILURE_HOOKS
from flows.orchestration import approve_in_ui, in_deployment, run_identity, schedule_reconcile
from lifecycle.actions import Action, ActionKind
from lifecycle.policy import load_policy
from models.audit import Outcome
from models.domain import Account
from tenure.checkpoint import write_checkpoint
from tenure.compose import check_targets, open_connectors
from tenure.settings import load_settings

__all__ = ["joiner", "mover", "leaver", "reconcile_employee", "run_lifecycle", "run_step", "StepFailed"]


class StepFailed(Exception):
    """A step the connector refused: raised in its task run so the run ends Failed (red in the UI's graph and
    task list) with the connector's message, and carried back to the flow, which goes on with the next step."""

    def __init__(self, result: ActionResult, account: Account | None) -> None:
        super().__init__(scrub(f"{result.action.step_name} failed: {result.detail}"))
        self.result, self.account = result, account


def _not_a_connector_error(task: Any, task_run: Any, state: State) -> bool:
    """Retry a step only for whole-step failures (e.g. the audit database was locked), never for API errors:
    those were already retried in the HTTP layer and are audited as failed. Prefect hands the exception over
    as the Failed state's data (``state.result()`` would be a coroutine in an async task)."""
    return not isinstance(state.data, (ConnectorError, StepFailed))


def log_step(logger: Any, result: ActionResult) -> None:
    """One line per applied, failed or skipped step: outcome, step (kind and ids), detail — no names."""
    level = logger.warning if result.outcome is Outcome.FAILED else logger.info
    detail = result.detail or result.action.reason
    level("%s %s: %s", result.outcome.value, result.action.step_name, scrub(detail))


@task(
    name="apply-action",
    task_run_name="{action.step_name}",
    cache_policy=NONE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_not_a_connector_error,
)
async def apply_action(
    applier: Applier, action: Action, account: Account | None
) -> tuple[ActionResult, Account | None]:
    """One audited, idempotent step; a failed one fails its task run (:class:`StepFailed`)."""
    result, account = await applier.apply_action(action, account)
    if result.outcome is Outcome.FAILED:
        raise StepFailed(result, account)
    return result, account


async def run_step(
    applier: Applier, action: Action, account: Account | None
) -> tuple[ActionResult, Account | None]:
    """Run ``action`` as an ``apply-action`` task run; a failed step comes back as its result."""
    try:
        return await apply_action(applier, action, account)
    except StepFailed as failed:
        return failed.result, failed.account


def _steps(applier: Applier) -> Step:
    """Each step a task run, except an approval request: suspending for an answer must happen in the flow
    itself (Prefect cannot suspend from within a task run)."""

    async def step(action: Action, account: Account | None) -> tuple[ActionResult, Account | None]:
        if action.kind is ActionKind.REQUEST_APPROVAL:
            return await applier.apply_action(action, account)
        return await run_step(applier, action, account)

    return step


def _artifact_key(employee_id: str) -> str:
    return "lifecycle-" + (re.sub(r"[^a-z0-9-]+", "-", employee_id.lower()).strip("-") or "employee")


async def run_lifecycle(event: str, employee_id: str, dry_run: bool = False) -> State:
    """Reconcile one employee; the run ends Failed (with a summary) if any step failed."""
    logger = get_run_logger()
    settings = load_settings()
    policy = load_policy(settings.policy_file, adopt_before=settings.adopt_before)
    # a target in the policy without settings, or the reverse, refuses the run
    check_targets(settings, policy.targets)
    auditor = Auditor(settings.database_url, **run_identity())
    deployed = in_deployment()
    async with open_connectors(settings) as connectors:
        try:
            report: ApplyReport = await reconcile(
                employee_id,
                connectors=connectors,
                policy=policy,
                auditor=auditor,
                dry_run=dry_run,
                scheduler=schedule_reconcile if deployed else None,
                approver=approve_in_ui,
                step_factory=_steps,
            )
        except MissingGroups as exc:  # the preflight refused: nothing was applied
            logger.error("%s", exc)
            return Failed(message=str(exc))
    if report.event not in (event, "none") and event != "reconcile":
        logger.info("asked for %s, but the HR record makes this run: %s", event, report.event)
    for result in report.results:  # one line per applied, failed or skipped step (ids, no names)
        log_step(logger, result)
    await create_markdown_artifact(
        markdown=scrub(report.markdown()),
        key=_artifact_key(employee_id),
        description=f"{event} {employee_id}: what changed",
    )
    summary = (
        f"{report.event} {employee_id}: {report.count(Outcome.APPLIED)} applied, "
        f"{len(report.failed)} failed, {report.count(Outcome.SKIPPED)} skipped"
    )
    logger.info(summary)
    await publish_checkpoint(write_checkpoint(settings))  # anchor the audit chain's end; no key, no-op
    if not report.ok:
        failed = "; ".join(f"{r.action.step_name}: {r.detail}" for r in report.failed)
        return Failed(message=scrub(f"{summary}. {report.error or failed}"))
    return Completed(message=summary)


@flow(name="joiner", flow_run_name="joiner-{employee_id}", log_prints=False, **FAILURE_HOOKS)
async def joiner(employee_id: str, dry_run: bool = False) -> State:
    """A hire: create the account (disabled before day one), birthright groups, joiner tickets."""
    return await run_lifecycle("joiner", employee_id, dry_run)


@flow(name="mover", flow_run_name="mover-{employee_id}", **FAILURE_HOOKS)
async def mover(employee_id: str, dry_run: bool = False) -> State:
    """A change: update attributes, add new birthright groups, remove the ones the old role gave."""
    return await run_lifecycle("mover", employee_id, dry_run)


@flow(name="leaver", flow_run_name="leaver-{employee_id}", **FAILURE_HOOKS)
async def leaver(employee_id: str, dry_run: bool = False) -> State:
    """A termination: disable at the termination time, remove groups, equipment-return ticket."""
    return await run_lifecycle("leaver", employee_id, dry_run)


@flow(name="reconcile-employee", flow_run_name="reconcile-{employee_id}", **FAILURE_HOOKS)
async def reconcile_employee(employee_id: str, dry_run: bool = False) -> State:
    """Decide from the HR record and the IdP state whether this is a joiner, mover or leaver, and apply it."""
    return await run_lifecycle("reconcile", employee_id, dry_run)
