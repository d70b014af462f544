"""``tenure report --since YYYY-MM-DD --out report.html``: the weekly figures HR and IT share, as one page."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["report_command", "read_roster"]

DEFAULT_WEEKS = 12


async def read_roster(hris_settings: Any) -> dict[str, Any]:
    """Every valid HR record by employee id (invalid ones are the sync's business)."""
    from connectors.errors import InvalidRecordError
    from tenure.compose import build_hris

    async with build_hris(hris_settings) as hris:
        return {
            e.employee_id: e async for e in hris.iter_employees() if not isinstance(e, InvalidRecordError)
        }


def report_command(
    since: Annotated[
        datetime | None,
        typer.Option("--since", formats=["%Y-%m-%d"], help=f"first day (default: {DEFAULT_WEEKS} weeks ago)"),
    ] = None,
    out_file: Annotated[Path, typer.Option("--out", help="the HTML file to write")] = Path("report.html"),
) -> None:
    """Time to access and to revoke per week (p50/p90), review completion and revocation, failed runs, brake
    trips: a self-contained HTML page with inline SVG charts. Exit 2 for a bad option or configuration."""
    from connectors.errors import ConnectorError
    from engine.report import build_report
    from tenure.cli.common import console, fail, load_config, out
    from tenure.report import render_html

    settings, policy = load_config()
    assert policy is not None
    now = datetime.now(UTC)
    start = since.replace(tzinfo=UTC) if since is not None else now - timedelta(weeks=DEFAULT_WEEKS)
    if start >= now:
        fail("--since must lie in the past")
    try:
        employees = asyncio.run(read_roster(settings.hris))
    except (ConnectorError, ValueError, OSError) as exc:
        console.print(f"warning: HR roster unavailable, time to access and to revoke left empty: {exc}")
        employees = {}
    report = build_report(
        database_url=settings.database_url, policy=policy, employees=employees, since=start, now=now
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(render_html(report), encoding="utf-8")
    out.print(f"report written to {out_file.resolve()}")
