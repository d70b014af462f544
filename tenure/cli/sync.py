"""``tenure sync``: the sync engine run locally, without a Prefect server (the same code the flow runs)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = ["sync_command"]


def sync_command(
    full: Annotated[
        bool, typer.Option("--full", help="every employee, not only those changed since the cursor")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="audit the plan as 'planned'; change nothing")
    ] = False,
    override_brake: Annotated[
        bool, typer.Option("--override-brake", help="apply even if the mass-change brake trips (audited)")
    ] = False,
    reread_directory: Annotated[
        bool,
        typer.Option(
            "--reread-directory",
            help="read a change-tracking directory (Entra ID) in full instead of its kept copy and the delta",
        ),
    ] = False,
) -> None:
    """Reconcile every changed employee (or all, with --full). Exit 1 if anything failed, an HR record was
    invalid (audited and skipped) or the brake refused."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from engine.auditor import Auditor
    from engine.locks import LockHeld
    from engine.sync import SyncEngine, SyncOptions, SyncReport
    from tenure.checkpoint import write_checkpoint
    from tenure.cli.common import EXIT_FAILED, console, fail, load_config, out, run_with_connectors
    from tenure.compose import Connectors

    settings, policy = load_config()
    assert policy is not None
    options = SyncOptions(
        full=full,
        dry_run=dry_run,
        override_brake=override_brake,
        reread_directory=reread_directory,
        max_concurrency=settings.idp.max_concurrency,
    )

    async def _sync(connectors: Connectors | None, auditor: Auditor) -> SyncReport:
        assert connectors is not None
        engine = SyncEngine(
            hris=connectors.hris,
            idp=connectors.idp,
            targets=connectors.targets,
            ticketing=connectors.ticketing,
            policy=policy,
            auditor=auditor,
            options=options,
            notifier=connectors.notifier,
        )
        try:
            async with engine:  # the job lock: a second sync of the same share refuses at once
                return await _with_progress(engine)
        except LockHeld as exc:
            fail(str(exc), EXIT_FAILED)

    async def _with_progress(engine: SyncEngine) -> SyncReport:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            reading = progress.add_task("reading HRIS and IdP", total=None)
            await engine.prepare()
            progress.update(reading, total=1, completed=1)
            if engine.report.refused and not engine.options.dry_run:
                progress.update(reading, description="refused: nothing applied")
                return await engine.run()  # no batches: closes the report
            if dry_run:
                _print_plans(engine)
            what = "planning (dry run)" if engine.options.dry_run else "applying"
            applying = progress.add_task(what, total=max(engine.report.planned, 1))

            def on_progress(done: int, total: int) -> None:
                progress.update(applying, completed=done, total=max(total, 1))

            return await engine.run(on_progress=on_progress)

    def _print_plans(engine: SyncEngine) -> None:
        """A dry run shows what it would do, each line naming the target: the actions of the first 50
        employees, those with ``link`` actions (adoptions) first and their links before the rest."""
        from lifecycle.actions import ActionKind
        from lifecycle.brake import SHOWN_IDS

        plans = [work.plan for batch in engine.batches for work in batch]
        plans.sort(key=lambda p: not p.of_kind(ActionKind.LINK_ACCOUNT))
        actions = [a for p in plans[:SHOWN_IDS] for a in p.actions]
        links = [a for a in actions if a.kind is ActionKind.LINK_ACCOUNT]
        for action in [*links, *(a for a in actions if a.kind is not ActionKind.LINK_ACCOUNT)]:
            out.print(
                f"planned {action.employee_id:<12} {action.target:<12} {action.kind.value:<18} "
                f"{action.subject:<28} {action.reason}"
            )
        if len(plans) > SHOWN_IDS:
            out.print(f"  ... the planned actions of {len(plans) - SHOWN_IDS} more employee(s) are not shown")

    report: Any = run_with_connectors(settings, _sync)
    write_checkpoint(settings)  # anchor the audit chain's end (tenure/checkpoint.py); a no-op without a key
    table = Table(title="tenure sync", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for row in report.table():
        table.add_row(row["metric"], row["value"])
    out.print(table)
    if report.dry_run:  # what would change, one line per employee (ids only), the first 50 then a count
        for line in report.plan_lines:
            out.print(f"  {line}")
        if report.planned > len(report.plan_lines):
            out.print(f"  ... and {report.planned - len(report.plan_lines)} more employee(s)")
    for line in report.failures[:20]:
        console.print(f"[red]failed[/red] {line}", markup=True, highlight=False)
    if len(report.failures) > 20:
        console.print(f"... and {len(report.failures) - 20} more (see the audit trail)")
    if report.invalid_records:
        console.print(
            f"[yellow]{report.invalid_records} invalid HR record(s) skipped[/yellow] "
            "(audited as hris.record.invalid)",
            markup=True,
            highlight=False,
        )
    for line in report.disputes:
        console.print(f"[red]disputed[/red] {line}", markup=True, highlight=False)
    if report.refused:
        fail(report.summary(), EXIT_FAILED)
    if report.disputes:
        fail(f"{len(report.disputes)} disputed account(s) left untouched (review them)", EXIT_FAILED)
    if not report.ok:
        fail(f"{report.failed} employee(s) failed", EXIT_FAILED)
    out.print(report.summary(ids=not report.dry_run))  # a dry run listed its employees above
    if report.invalid_records:  # the good records were processed; the bad ones still need HR's attention
        raise typer.Exit(EXIT_FAILED)
