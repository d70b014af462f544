"""The ``tenure`` command and its audit, config, plan and apply subcommands. Exit codes: 0 ok, 1 some work failed (and said what), 2 usage or configuration error."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr
from rich.table import Table

from connectors.redaction import install_output_scrubbing, mask_urls
from models.audit import iter_events, verify
from models.db import DatabaseUnavailable, require_existing, session_scope
from tenure.checkpoint import CheckpointError, check_anchor, write_checkpoint
from tenure.cli.common import EXIT_FAILED, fail, load_config, out, run_with_connectors
from tenure.cli.report import report_command
from tenure.cli.review import kpi_command, review_app
from tenure.cli.sync import sync_command
from tenure.export import NeutralCSVWriter

if TYPE_CHECKING:
    from engine.auditor import Auditor
    from tenure.compose import Connectors

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Tenure: HR-driven identity lifecycle on Prefect."
)
audit_app = typer.Typer(no_args_is_help=True, help="Read and verify the hash-chained audit trail.")
config_app = typer.Typer(no_args_is_help=True, help="Check settings and the policy file.")
app.add_typer(audit_app, name="audit")
app.add_typer(config_app, name="config")


def _register_subcommands() -> None:
    from deployments.webhook_cli import app as webhook_app

    app.add_typer(webhook_app, name="webhook", help="The signed HRIS webhook receiver.")


app.add_typer(review_app, name="review")
app.command("kpi")(kpi_command)
app.command("report")(report_command)
app.command("sync")(sync_command)


def _masked(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else "(empty)"
    if isinstance(value, str):
        return mask_urls(value)  # e.g. TENURE_DATABASE_URL's password
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


def _flatten(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += _flatten(f"{prefix}__{key}" if prefix else key, item)
        return rows
    return [(f"TENURE_{prefix.upper()}", "" if value is None else str(value))]


@config_app.command("check")
def config_check(
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="also read once from each configured system (HRIS, IdP, ticketing); writes nothing",
        ),
    ] = False,
) -> None:
    """Validate settings and the policy file; print what is configured, secrets masked. With --online, reach
    each system with one read and name what fails and why (exit 2)."""
    settings, policy = load_config()
    assert policy is not None
    table = Table(title="Tenure configuration", show_lines=False)
    table.add_column("setting")
    table.add_column("value")
    for key, value in _flatten("", _masked(settings.model_dump())):
        table.add_row(key, value)
    out.print(table)
    out.print(
        f"policy {settings.policy_file}: {len(policy.birthright)} birthright rules, "
        f"{len(policy.managed_groups)} managed groups, {len(policy.privileged_groups)} privileged groups"
    )
    try:
        with session_scope(settings.database_url):
            pass
    except DatabaseUnavailable as exc:
        fail(str(exc))
    if online:
        _check_online(settings, policy)
    out.print("configuration OK" + (" (every system answered)" if online else " (offline: add --online)"))


def _check_online(settings: Any, policy: Any) -> None:
    """One read per configured system (:func:`engine.preflight.check_online`); exit 2 naming the failures."""
    from engine.preflight import check_online

    async def _check(connectors: Connectors | None, _: Auditor) -> Any:
        assert connectors is not None
        return await check_online(connectors, policy)

    checks = run_with_connectors(settings, _check)
    for check in checks:
        mark = "ok    " if check.ok else "FAILED"
        out.print(f"{mark} {check.system} ({check.source}): {check.problem or check.checked}")
    failed = [c for c in checks if not c.ok]
    if failed:
        fail(
            f"{len(failed)} system(s) did not answer as configured: "
            + "; ".join(f"{c.system} ({c.source})" for c in failed)
        )


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain and check its end against the latest signed checkpoint; exit 1 naming the first
    edited, deleted, inserted or reordered event, or a truncated, wiped or re-hashed chain."""
    settings, _ = load_config(with_policy=False)
    try:
        require_existing(settings.database_url)
        with session_scope(settings.database_url) as session:
            result = verify(session=session)
            anchor = check_anchor(session, result, settings) if result.ok else None
    except DatabaseUnavailable as exc:
        fail(str(exc))
    except CheckpointError as exc:
        fail(str(exc))
    out.print(result.describe())
    for line in anchor.lines if anchor else ():
        out.print(line)
    if not result.ok or (anchor is not None and not anchor.ok):
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain's current end and append it to the checkpoint file (TENURE_AUDIT__CHECKPOINT_DIR)."""
    settings, _ = load_config(with_policy=False)
    try:
        checkpoint = write_checkpoint(settings, required=True)
    except (CheckpointError, DatabaseUnavailable) as exc:
        fail(str(exc))
    assert checkpoint is not None
    out.print(f"wrote {checkpoint.describe()} to {settings.audit.checkpoint_dir}")


@audit_app.command("export")
def audit_export(
    format: Annotated[ExportFormat, typer.Option("--format", help="jsonl or csv")] = ExportFormat.jsonl,
    since: Annotated[str | None, typer.Option(help="ISO-8601 date or time (UTC if no offset)")] = None,
    employee: Annotated[str | None, typer.Option(help="only events of this employee id")] = None,
) -> None:
    """Write audit events (with their hashes) to standard output, oldest first."""
    settings, _ = load_config(with_policy=False)
    since_at = None
    if since:
        try:
            since_at = datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not an ISO-8601 date or time")
        if since_at.tzinfo is None:
            since_at = since_at.replace(tzinfo=UTC)
    try:
        require_existing(settings.database_url)
        with session_scope(settings.database_url) as session:
            writer = None
            for event in iter_events(session=session, since=since_at, employee_id=employee):
                row = event.export()
                if format is ExportFormat.jsonl:
                    sys.stdout.write(json.dumps(row, sort_keys=True, default=str) + "\n")
                    continue
                if writer is None:
                    writer = NeutralCSVWriter(sys.stdout, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow({**row, "details": json.dumps(row["details"], sort_keys=True)})
    except DatabaseUnavailable as exc:
        fail(str(exc))


@app.command("plan")
def plan_command(
    employee_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Print what Tenure would do for one employee (changes nothing, writes nothing)."""
    from connectors.errors import InvalidRecordError
    from engine.reconcile import UnknownEmployee, plan_employee

    settings, policy = load_config()
    assert policy is not None

    async def _plan(connectors: Connectors | None, _: Auditor) -> Any:
        assert connectors is not None
        try:
            plan, _account = await plan_employee(
                employee_id, connectors=connectors, policy=policy, database_url=settings.database_url
            )
        except UnknownEmployee as exc:
            fail(str(exc), EXIT_FAILED)
        except InvalidRecordError as exc:
            fail(f"{employee_id}: invalid HR record: {exc.reason}", EXIT_FAILED)
        return plan

    plan = run_with_connectors(settings, _plan)
    if as_json:
        out.print_json(plan.model_dump_json())
        return
    out.print(f"{plan.event} {plan.employee_id}: {len(plan.actions)} action(s)")
    if plan.skipped_reason:
        out.print(f"skipped: {plan.skipped_reason}")
    for i, action in enumerate(plan.actions, 1):
        out.print(f"{i:>3}. {action.target:<12} {action.kind.value:<18} {action.subject:<28} {action.reason}")


@app.command("apply")
def apply_command(
    employee_id: str,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="audit the plan as 'planned'; change nothing")
    ] = False,
) -> None:
    """Plan and apply for one employee; every step audited. Exit 1 if any step failed."""
    from engine.reconcile import UnknownEmployee, reconcile

    settings, policy = load_config()
    assert policy is not None

    async def _apply(connectors: Connectors | None, auditor: Auditor) -> Any:
        assert connectors is not None
        try:
            return await reconcile(
                employee_id, connectors=connectors, policy=policy, auditor=auditor, dry_run=dry_run
            )
        except UnknownEmployee as exc:
            fail(str(exc), EXIT_FAILED)

    report = run_with_connectors(settings, _apply)
    write_checkpoint(settings)  # anchor the audit chain's end (tenure/checkpoint.py); a no-op without a key
    for result in report.results:
        out.print(
            f"{result.outcome.value:<8} {result.action.target:<12} {result.action.kind.value:<18} "
            f"{result.action.subject:<28} "
            f"{result.detail or result.action.reason}"
        )
    if report.error:
        fail(f"{employee_id}: {report.error}", EXIT_FAILED)
    if not report.results:
        out.print(
            f"{employee_id}: nothing to change"
            + (f" ({report.skipped_reason})" if report.skipped_reason else "")
        )
    if report.failed:
        fail(f"{len(report.failed)} step(s) failed for {employee_id}", EXIT_FAILED)


@app.command("approve")
def approve_command(
    employee_id: str,
    group: str,
    by: Annotated[str, typer.Option("--by", help="who approves")],
    reason: Annotated[str, typer.Option("--reason", help="why")] = "",
) -> None:
    """Record an approval of privileged GROUP for EMPLOYEE_ID in the ledger (audited); the next sync or
    reconcile adds the membership. A group revoked in a review is granted again only this way."""
    from engine.applier import Applier
    from lifecycle.actions import Plan, RecordApproval

    settings, policy = load_config()
    assert policy is not None
    if group not in policy.privileged_names:
        fail(
            f"{group!r} is not a privileged group of the policy ({', '.join(sorted(policy.privileged_names))})"
        )
    if not by.strip():
        fail("an approval needs the name of who approves (--by)")

    async def _approve(_: Connectors | None, auditor: Auditor) -> Any:
        approval = RecordApproval(
            employee_id=employee_id,
            group=group,
            decided_by=by,
            decided_at=datetime.now(UTC),
            reason=reason or f"approved by {by}",
        )
        plan = Plan(employee_id=employee_id, event="none", actions=[approval])
        return await Applier(auditor=auditor).apply(plan, None)

    report = run_with_connectors(settings, _approve, connect=False)
    if not report.ok:
        fail(f"the approval could not be recorded: {report.error or report.failed[0].detail}", EXIT_FAILED)
    out.print(f"approved {group} for {employee_id} by {by}; the next sync or reconcile applies it")


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    install_output_scrubbing()
    app()


if __name__ == "__main__":
    main()
