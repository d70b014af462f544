"""Access review flows: ``access-review`` (findings → auto-remediation → campaign), ``review-deadline``
(reminders, escalation, deadline rule) and ``review-decide`` (one decision).

Decisions in the Prefect UI: run the ``review-decide/review-decide`` deployment ("Custom run"); its parameter form
(campaign, item, keep/revoke, by, reason) is the input form. A deployment form needs no paused run, so a
campaign of hundreds of items does not hold hundreds of paused flow runs; the CLI
(``tenure review decide``) does the same through the same engine.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed, Failed, State

from engine.applier import Applier
from engine.auditor import Auditor
from engine.kpi import compute_kpis
from engine.report import build_report
from engine.review import decide, process_deadlines, run_review
from flows.anchoring import publish_checkpoint
from flows.lifecycle import run_step
from flows.notify import FAILURE_HOOKS
from flows.orchestration import run_identity
from lifecycle.policy import Policy, load_policy
from models.domain import Employee
from tenure.checkpoint import write_checkpoint
from tenure.compose import Connectors, check_targets, open_connectors
from tenure.settings import Settings, load_settings

__all__ = ["access_review", "review_deadline", "review_decide", "MAX_TABLE_ROWS"]

REPORT_WEEKS = 12  # the weekly figures on the nightly run (``tenure report`` draws the same as charts)
MAX_TABLE_ROWS = 1000  # the findings table artifact; the full list is in the audit trail and the export


def _task_step(applier: Applier):  # type: ignore[no-untyped-def]
    return lambda action, account: run_step(applier, action, account)


def dated_run_name(prefix: str) -> Callable[[], str]:
    """``access-review-2026-12-02``: a review run is named by its scheduled day (UTC), as the UI lists it."""

    def name() -> str:
        from prefect.runtime import flow_run

        started = flow_run.scheduled_start_time or datetime.now(UTC)
        return f"{prefix}-{started.astimezone(UTC):%Y-%m-%d}"

    return name


def _config() -> tuple[Settings, Policy]:
    settings = load_settings()
    policy = load_policy(settings.policy_file, adopt_before=settings.adopt_before)
    # a target in the policy without settings, or the reverse, refuses the run
    check_targets(settings, policy.targets)
    return settings, policy


def _engine_args(settings: Settings, policy: Policy, connectors: Connectors) -> dict[str, Any]:
    """What every review engine call takes in a flow: the connectors, the policy, an auditor linked to
    this flow run, and each action applied as an ``apply-action`` task."""
    return {
        "idp": connectors.idp,
        "targets": connectors.targets,
        "ticketing": connectors.ticketing,
        "policy": policy,
        "auditor": Auditor(settings.database_url, **run_identity()),
        "step_factory": _task_step,
    }


@flow(name="access-review", flow_run_name=dated_run_name("access-review"), log_prints=False, **FAILURE_HOOKS)
async def access_review(dry_run: bool = False) -> State:
    """Find access problems; auto-remediate the policy's kinds, open a campaign for the rest; KPI artifact."""
    logger = get_run_logger()
    settings, policy = _config()
    async with open_connectors(settings) as connectors:
        run = await run_review(
            hris=connectors.hris, dry_run=dry_run, **_engine_args(settings, policy, connectors)
        )
        employees: dict[str, Employee] = {}
        async for record in connectors.hris.iter_employees():
            if isinstance(record, Employee):
                employees[record.employee_id] = record
    await publish_checkpoint(write_checkpoint(settings))  # anchor the audit chain's end; no key, no-op
    rows = run.summary_rows()
    await create_table_artifact(
        table=rows[:MAX_TABLE_ROWS],
        key="access-review-findings",
        description=f"{len(rows)} findings"
        + (f" (first {MAX_TABLE_ROWS})" if len(rows) > MAX_TABLE_ROWS else "")
        + f"; campaign {run.campaign_id or '-'}",
    )
    await create_markdown_artifact(
        markdown=run.markdown(), key="access-review-summary", description="access review summary"
    )
    kpis = compute_kpis(database_url=settings.database_url, policy=policy, employees=employees)
    await create_markdown_artifact(markdown=kpis.markdown(), key="tenure-kpis", description="Tenure KPIs")
    weekly = build_report(
        database_url=settings.database_url,
        policy=policy,
        employees=employees,
        since=datetime.now(UTC) - timedelta(weeks=REPORT_WEEKS),
    )
    await create_markdown_artifact(
        markdown=weekly.markdown(), key="tenure-report", description="tenure report: the weekly figures"
    )
    summary = (
        f"{len(run.findings)} findings, {len(run.auto)} auto-remediated ({len(run.failed)} failed), "
        f"campaign {run.campaign_id or '-'}"
    )
    logger.info(summary)
    if run.failed:
        return Failed(message=summary)
    return Completed(message=summary)


@flow(name="review-deadline", flow_run_name=dated_run_name("review-deadline"), **FAILURE_HOOKS)
async def review_deadline() -> State:
    """Daily: remind after remind_after_days, escalate after escalate_after_days, settle at the deadline."""
    settings, policy = _config()
    async with open_connectors(settings) as connectors:
        report = await process_deadlines(
            database_url=settings.database_url, **_engine_args(settings, policy, connectors)
        )
    await publish_checkpoint(write_checkpoint(settings))  # anchor the audit chain's end; no key, no-op
    await create_markdown_artifact(
        markdown=report.markdown(),
        key="review-deadlines",
        description="review reminders, escalations, deadline decisions",
    )
    failed = [item for _, item, outcome in report.deadline_items if outcome == "failed"]
    if failed:
        return Failed(message=f"{len(failed)} deadline revocation(s) failed: {', '.join(failed)}")
    return Completed(message=report.markdown().splitlines()[-1])


@flow(name="review-decide", flow_run_name="review-decide-{campaign_id}-{item_id}", **FAILURE_HOOKS)
async def review_decide(
    campaign_id: str, item_id: str, decision: Literal["keep", "revoke"], by: str, reason: str = ""
) -> State:
    """One reviewer decision (the Prefect UI form); a revoke is applied through the Applier."""
    settings, policy = _config()
    async with open_connectors(settings) as connectors:
        item = await decide(
            database_url=settings.database_url,
            campaign_id=campaign_id,
            item_id=item_id,
            decision=decision,
            by=by,
            reason=reason,
            **_engine_args(settings, policy, connectors),
        )
    await publish_checkpoint(write_checkpoint(settings))  # anchor the audit chain's end; no key, no-op
    message = f"{item_id}: {item.decision} by {item.decided_by}" + (
        f"; {item.action_taken}: {item.action_outcome}" if item.action_outcome else ""
    )
    return Failed(message=message) if item.action_outcome == "failed" else Completed(message=message)
