"""``tenure report``'s figures (engine/report.py) on six weeks of history, the page (tenure/report.py) and the
command: weekly p50/p90 of time to access and to revoke, review completion and revocation, failed runs, brake
trips — the same figures in the HTML page and in the markdown artifact."""

from __future__ import annotations

import re
import statistics
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.report import build_report
from tenure.cli.app import app
from tenure.report import render_html
from tests.support.report_history import NOW, POLICY, WEEKS, write_history


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]


def test_weekly_figures_match_the_history(fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    history = write_history(fresh_sqlite_url, monkeypatch)
    report = build_report(
        database_url=fresh_sqlite_url,
        policy=POLICY,
        employees=history.employees,
        since=NOW - timedelta(weeks=WEEKS),
        now=NOW,
    )
    assert len(report.weeks) == WEEKS
    for index, week in enumerate(report.weeks):
        access, revoke = history.access_hours[index], history.revoke_hours[index]
        assert week.access.count == len(access) and week.access.median_hours == round(
            statistics.median(access), 2
        )
        assert week.access.p90_hours == round(_p90(access), 2)
        assert week.revoke.median_hours == round(statistics.median(revoke), 2)
        items, decided, revoked = history.review[index]
        assert (week.review_items, week.review_decided, week.review_revoked) == (items, decided, revoked)
        assert week.failed_runs == history.failed_runs.get(index, 0)
        assert week.brake_trips == history.brake_trips.get(index, 0)
    markdown = report.markdown()
    first = report.weeks[0]
    assert f"| {first.start:%Y-%m-%d} | {first.access.median_hours:g} h |" in markdown
    assert markdown.count("\n| 20") == WEEKS


def test_the_page_is_self_contained_with_a_bar_per_nonzero_figure(
    fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = write_history(fresh_sqlite_url, monkeypatch)
    report = build_report(
        database_url=fresh_sqlite_url,
        policy=POLICY,
        employees=history.employees,
        since=NOW - timedelta(weeks=WEEKS),
        now=NOW,
    )
    page = render_html(report)
    assert not re.search(r"<script|<link|https?://(?!www\.w3\.org/2000/svg)", page)  # no script, no CDN
    bars = re.findall(
        r'<rect class="bar" data-chart="(\w+)" data-series="([^"]+)" data-value="([-\d.]+)"', page
    )
    by_chart = {chart: [(s, float(v)) for c, s, v in bars if c == chart] for chart, _, _ in bars}
    assert set(by_chart) == {"access", "revoke", "review", "failures"}
    assert ("p50", -2.0) in by_chart["access"]  # ready before day one: below the zero line
    assert sum(1 for s, _ in by_chart["failures"] if s == "failed runs") == sum(history.failed_runs.values())
    assert [v for s, v in by_chart["failures"] if s == "brake trips"] == [1.0]


def test_a_period_without_data_says_so_instead_of_drawing_nothing(fresh_sqlite_url: str) -> None:
    report = build_report(
        database_url=fresh_sqlite_url, policy=POLICY, employees={}, since=NOW.replace(day=1), now=NOW
    )
    page = render_html(report)
    assert page.count("No data in this period.") == 4 and '<rect class="bar"' not in page


def test_tenure_report_writes_the_page(
    fresh_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hris = tmp_path / "hris.csv"
    hris.write_text("employee_id,first_name,last_name,status\n")
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(Path("examples/policy.yaml").resolve()))
    monkeypatch.setenv("TENURE_HRIS__KIND", "csv")
    monkeypatch.setenv("TENURE_HRIS__PATH", str(hris))
    out = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--since", "2026-10-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!doctype html>") and str(out) in result.output.replace("\n", "")
    bad = CliRunner().invoke(app, ["report", "--since", "last week", "--out", str(out)])
    assert bad.exit_code == 2
