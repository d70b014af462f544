"""``tenure review run|decide|deadline|export`` and ``tenure kpi`` (the same engine the review flows run)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tenure.checkpoint import write_checkpoint

if TYPE_CHECKING:
    from engine.auditor import Auditor
    from lifecycle.policy import Policy
    from tenure.compose import Connectors
    from tenure.settings import Settings

__all__ = ["review_app", "kpi_command"]

review_app = typer.Typer(
    no_args_is_help=True, help="Access reviews: findings, campaigns, decisions, evidence."
)


class DecisionChoice(str, Enum):
    keep = "keep"
    revoke = "revoke"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


def _load_config() -> tuple[Settings, Policy]:
    """Settings and policy, or exit 2 (``load_config``)."""
    from tenure.cli.common import load_config

    settings, policy = load_config()
    assert policy is not None
    return settings, policy


@review_app.command("run")
def review_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show findings; audit auto-remediation as planned")
    ] = False,
) -> None:
    """Find orphan, leaver, dormant, outside-policy, SoD and re-certification findings; auto-remediate what
    the policy says, open a campaign (one ticket per reviewer) for the rest. Exit 1 if a remediation
    failed."""
    from engine.review import run_review
    from tenure.cli.common import EXIT_FAILED, fail, out, run_with_connectors

    settings, policy = _load_config()

    async def _run(connectors: Any, auditor: Auditor) -> Any:
        return await run_review(
            hris=connectors.hris,
            idp=connectors.idp,
            targets=connectors.targets,
            ticketing=connectors.ticketing,
            policy=policy,
            auditor=auditor,
            dry_run=dry_run,
        )

    run = run_with_connectors(settings, _run)
    write_checkpoint(settings)  # anchor the audit chain's end (tenure/checkpoint.py); a no-op without a key
    out.print(
        f"{run.accounts} accounts, {run.memberships} memberships, {len(run.findings)} findings"
        + (f", {run.invalid_records} unreadable HR records" if run.invalid_records else "")
    )
    for kind, count in run.counts.items():
        out.print(f"  {kind:<18} {count}")
    for row in run.summary_rows():
        out.print(
            f"{row['finding']}  {row['kind']:<18} {row['target']:<12} {row['employee_id'] or '-':<10} "
            f"{row['group'] or '-':<24} {row['handling']}"
        )
    if run.campaign_id:
        out.print(
            f"campaign {run.campaign_id}: {len(run.reviewers)} item(s) for "
            f"{len(set(run.reviewers.values()))} reviewer(s)"
        )
    if run.failed:
        fail(f"{len(run.failed)} auto-remediation(s) failed", EXIT_FAILED)


@review_app.command("decide")
def review_decide(
    campaign: str,
    item: str,
    decision: DecisionChoice,
    by: Annotated[str, typer.Option("--by", help="who decided (the reviewer's name)")],
    reason: Annotated[
        str, typer.Option("--reason", help="why (kept in the audit trail and the export)")
    ] = "",
) -> None:
    """Record keep or revoke for one campaign item; a revoke is applied at once. Exit 1 if it failed."""
    from engine.review import ReviewError, decide
    from tenure.cli.common import EXIT_FAILED, fail, out, run_with_connectors

    settings, policy = _load_config()

    async def _decide(connectors: Connectors | None, auditor: Auditor) -> Any:
        return await decide(
            database_url=settings.database_url,
            campaign_id=campaign,
            item_id=item,
            decision=decision.value,
            by=by,
            reason=reason,
            idp=connectors.idp if connectors else None,
            targets=connectors.targets if connectors else None,
            ticketing=connectors.ticketing if connectors else None,
            policy=policy,
            auditor=auditor,
        )

    try:
        result = run_with_connectors(settings, _decide, connect=decision is DecisionChoice.revoke)
        write_checkpoint(settings)
    except ReviewError as exc:
        fail(str(exc))
    out.print(
        f"{campaign} {item}: {result.decision} by {result.decided_by}"
        + (f"; {result.action_taken}: {result.action_outcome}" if result.action_outcome else "")
    )
    if result.action_outcome == "failed":
        fail(
            f"the revocation of {item} failed (see the audit trail); run the same command to retry",
            EXIT_FAILED,
        )


@review_app.command("deadline")
def review_deadline() -> None:
    """Send due reminders and escalations; settle undecided items of campaigns past their deadline."""
    from engine.review import process_deadlines
    from tenure.cli.common import out, run_with_connectors

    settings, policy = _load_config()

    async def _deadline(connectors: Any, auditor: Auditor) -> Any:
        return await process_deadlines(
            database_url=settings.database_url,
            idp=connectors.idp,
            targets=connectors.targets,
            ticketing=connectors.ticketing,
            policy=policy,
            auditor=auditor,
        )

    out.print(run_with_connectors(settings, _deadline).markdown())
    write_checkpoint(settings)


@review_app.command("export")
def review_export(
    campaign: str,
    format: Annotated[ExportFormat, typer.Option("--format", help="csv or json")] = ExportFormat.csv,
) -> None:
    """Write the campaign's evidence (each item, decision, who, when, why, action taken) to stdout."""
    from engine.review import EXPORT_FIELDS, ReviewError, export_rows
    from tenure.cli.common import fail, load_config
    from tenure.export import NeutralCSVWriter

    settings, _ = load_config(with_policy=False)
    try:
        rows = export_rows(settings.database_url, campaign)
    except ReviewError as exc:
        fail(str(exc))
    if format is ExportFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    writer = NeutralCSVWriter(sys.stdout, fieldnames=list(EXPORT_FIELDS))
    writer.writeheader()
    writer.writerows(rows)


def kpi_command(
    days: Annotated[int, typer.Option("--days", min=1, help="the window: events of the last N days")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print the KPIs as JSON")] = False,
) -> None:
    """Time to access for joiners, time to disable for leavers, review completion, orphans, failures."""
    from connectors.errors import ConnectorError, InvalidRecordError
    from engine.kpi import compute_kpis
    from models.db import DatabaseUnavailable, require_existing
    from tenure.cli.common import EXIT_FAILED, fail, out
    from tenure.compose import build_hris

    settings, policy = _load_config()

    async def _roster() -> dict[str, Any]:
        async with build_hris(settings.hris) as hris:
            return {
                e.employee_id: e async for e in hris.iter_employees() if not isinstance(e, InvalidRecordError)
            }

    import asyncio

    try:
        require_existing(settings.database_url)
    except DatabaseUnavailable as exc:
        fail(str(exc))
    try:
        employees = asyncio.run(_roster())
    except (ConnectorError, ValueError, OSError) as exc:  # no KPI about HR dates Tenure could not read
        fail(f"cannot read the HR roster for the KPIs: {exc}", EXIT_FAILED)
    report = compute_kpis(
        database_url=settings.database_url, policy=policy, employees=employees, window_days=days
    )
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    else:
        out.print(report.markdown())
