"""``tenure report``'s page in headless Chromium: it renders without network, and every chart draws bars on a
demo-like history (six weeks of hires, leavers, reviews, failed runs and a brake trip). The screenshot is kept
in ``test-artifacts/report.png``."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from engine.report import build_report
from tenure.report import render_html
from tests.support.report_history import NOW, POLICY, WEEKS, write_history

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,1100",
)


def _chromium() -> str:
    found = next((c for c in ("/usr/bin/chromium", shutil.which("chromium")) if c and Path(c).exists()), None)
    if found is None:
        pytest.fail("chromium is not installed: run scripts/install-peers.sh")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        return subprocess.run(
            [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def test_the_report_renders_in_chromium_with_every_chart_drawn(
    fresh_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = write_history(fresh_sqlite_url, monkeypatch)
    report = build_report(
        database_url=fresh_sqlite_url,
        policy=POLICY,
        employees=history.employees,
        since=NOW - timedelta(weeks=WEEKS),
        now=NOW,
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = _run("--dump-dom", page.as_uri())
    assert dom.returncode == 0 and dom.stdout.strip(), dom.stderr[-2000:]
    charts = re.findall(r'<figure class="chart" data-chart="(\w+)">(.*?)</figure>', dom.stdout, re.DOTALL)
    assert [name for name, _ in charts] == ["access", "revoke", "review", "failures"]
    for name, body in charts:
        heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', body)]
        assert heights and all(h >= 1 for h in heights), f"chart {name} draws no bars"
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    taken = _run(f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
