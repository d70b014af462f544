"""The ``sync`` flow: reconcile every changed (or, with ``full``, every) employee in one run.

The work is :class:`engine.sync.SyncEngine`'s; this flow adds Prefect: one ``apply-batch`` task run per batch
of employees (never one per employee), a progress artifact, a summary table artifact (ids and counts only),
and a Failed state when the brake refused the run or any employee failed. Deployments: ``sync/nightly-sync``
(nightly, incremental) and ``sync/weekly-full-sync`` (weekly, ``full=True``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, acreate_table_artifact, aupdate_progress_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed, State

from connectors.redaction import scrub
from engine.applier import ApplyReport
from engine.auditor import Auditor
from engine.locks import LockHeld
from engine.preflight import MissingGroups
from engine.sync import DEFAULT_BATCH_SIZE, BatchResult, SyncEngine, SyncOptions, SyncReport
from flows.anchoring import publish_checkpoint
from flows.lifecycle import log_step
from flows.notify import FAILURE_HOOKS
from flows.orchestration import in_deployment, run_identity, schedule_reconcile
from lifecycle.policy import load_policy
from tenure.checkpoint import write_checkpoint
from tenure.compose import check_targets, open_connectors
from tenure.settings import load_settings

__all__ = ["sync", "apply_batch", "sync_run_name", "artifact_key"]

MAX_FAILURES_IN_MESSAGE = 5


def sync_run_name() -> str:
    """``sync-full`` / ``sync-incremental`` (+ ``-dry-run``, + ``-p{n}of{m}`` for a partitioned run)."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    name = "sync-full" if params.get("full") else "sync-incremental"
    if int(params.get("partitions", 1) or 1) > 1:
        name += f"-p{params.get('partition', 0)}of{params.get('partitions')}"
    if params.get("dry_run"):
        name += "-dry-run"
    return name


def artifact_key(kind: str, options: SyncOptions) -> str:
    """Artifact keys (lowercase letters, digits, dashes): one history per mode and partition."""
    key = f"sync-{options.mode}-{kind}"
    return key + (f"-p{options.partition}of{options.partitions}" if options.partitions > 1 else "")


class BatchFailed(Exception):
    """Steps of a batch failed: raised in its task run so the run ends Failed (red in the UI) with the
    failures, and carried back to the flow, which goes on with the next batch."""

    def __init__(self, result: BatchResult) -> None:
        shown = "; ".join(result.failures[:MAX_FAILURES_IN_MESSAGE])
        more = len(result.failures) - MAX_FAILURES_IN_MESSAGE
        super().__init__(
            scrub(f"{result.failed} employee(s) failed: {shown}" + (f" (+{more} more)" if more > 0 else ""))
        )
        self.result = result


@task(name="apply-batch", task_run_name="apply-batch-{number}", cache_policy=NONE)
async def apply_batch(engine: SyncEngine, number: int) -> BatchResult:
    """Apply one batch of employees' plans (each action audited and idempotent), one log line per step. No
    task retries: API failures were already retried by the HTTP layer and are audited as failed; the next sync
    retries them. A batch with a failed step fails its task run (:class:`BatchFailed`)."""
    logger = get_run_logger()

    def log_steps(report: ApplyReport) -> None:
        for step in report.results:
            log_step(logger, step)
        if report.error:
            logger.warning("failed %s: %s", report.employee_id, scrub(report.error))

    result = await engine.apply_batch(number, on_report=log_steps)
    if result.failed:
        raise BatchFailed(result)
    return result


async def run_batch(engine: SyncEngine, number: int) -> BatchResult:
    """One ``apply-batch`` task run; a failed batch comes back as its result (the run goes on)."""
    try:
        return await apply_batch(engine, number)
    except BatchFailed as failed:
        return failed.result


def _outcome(report: SyncReport) -> State:
    summary = report.summary()
    if report.refused:
        return Failed(message=summary)
    if not report.ok:
        problems = [*report.disputes, *report.failures]
        shown = scrub("; ".join(problems[:MAX_FAILURES_IN_MESSAGE]))
        more = len(problems) - MAX_FAILURES_IN_MESSAGE
        return Failed(message=f"{summary}. Failures: {shown}" + (f" (+{more} more)" if more > 0 else ""))
    return Completed(message=summary)


async def _run(engine: SyncEngine, options: SyncOptions, logger: Any) -> SyncReport:
    """Read and plan, then apply batch by batch (one task run each), with a progress artifact."""
    progress_id: UUID = await acreate_progress_artifact(
        progress=0.0,
        key=artifact_key("progress", options),
        description=f"sync {options.mode}: employees applied",
    )
    await engine.prepare()
    report = engine.report
    logger.info(
        "read %d employees (%d invalid) and %d accounts; %d to change in %d batch(es)",
        report.employees_seen,
        report.invalid_records,
        report.accounts_read,
        report.planned,
        report.batches,
    )

    async def on_progress(done: int, total: int) -> None:
        await aupdate_progress_artifact(progress_id, 100.0 * done / total if total else 100.0)

    return await engine.run(batch_runner=lambda number: run_batch(engine, number), on_progress=on_progress)


@flow(name="sync", flow_run_name=sync_run_name, log_prints=False, **FAILURE_HOOKS)
async def sync(
    full: bool = False,
    dry_run: bool = False,
    override_brake: bool = False,
    partition: int = 0,
    partitions: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    reread_directory: bool = False,
) -> State:
    """Bring the IdP in line with the HRIS: incremental since the cursor, or ``full``; ``dry_run`` audits the
    plan as ``planned`` and changes nothing; ``override_brake`` lets a mass disable through (audited);
    ``partition``/``partitions`` take a stable share of the employees; ``batch_size`` employees per task run;
    ``reread_directory`` reads a change-tracking directory (Entra ID) in full, not from its copy and the delta."""
    logger = get_run_logger()
    settings = load_settings()
    policy = load_policy(settings.policy_file, adopt_before=settings.adopt_before)
    # a target in the policy without settings, or the reverse, refuses the run
    check_targets(settings, policy.targets)
    options = SyncOptions(
        full=full,
        dry_run=dry_run,
        override_brake=override_brake,
        partition=partition,
        partitions=partitions,
        batch_size=batch_size,
        reread_directory=reread_directory,
        max_concurrency=settings.idp.max_concurrency,
    )
    async with open_connectors(settings) as connectors:
        engine = SyncEngine(
            hris=connectors.hris,
            idp=connectors.idp,
            targets=connectors.targets,
            ticketing=connectors.ticketing,
            policy=policy,
            auditor=Auditor(settings.database_url, **run_identity()),
            options=options,
            scheduler=schedule_reconcile if in_deployment() else None,
            notifier=connectors.notifier,
        )
        try:
            async with engine:
                report = await _run(engine, options, logger)
        except (LockHeld, MissingGroups) as exc:  # another sync holds the job lock; the preflight refused
            logger.error("%s", exc)
            return Failed(message=str(exc))
    await acreate_table_artifact(
        table=report.table(), key=artifact_key("summary", options), description=report.summary()
    )
    (logger.warning if report.refused else logger.info)(report.summary())  # the brake, said once
    await publish_checkpoint(write_checkpoint(settings))  # anchor the audit chain's end; no key, no-op
    return _outcome(report)
