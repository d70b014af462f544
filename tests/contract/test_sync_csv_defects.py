"""`tenure sync --full --dry-run` on a CSV export with 5% planted defects (among them one Latin-1 row and one
field over the bound), against a real scim2-server: exit 1, every good employee planned, every bad row audited
once as ``hris.record.invalid`` with its line number and reason. (The 50,000-row run is bench/csv_defects_bench.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from connectors.hris.csv_export import MAX_FIELD_CHARS
from lifecycle.policy import load_policy
from models.audit import AuditEvent
from models.db import reset_engines, session_scope
from tests.support.hris_data import DEFECTS, all_active, fake_people, plant_defects, write_csv
from tests.support.scim_server import SCIMServer, create_group

pytestmark = pytest.mark.slow

ROWS = 400
DEFECT_SHARE = 0.05
POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"


async def test_dry_run_plans_every_good_row_and_audits_each_bad_row_once(
    scim_server: SCIMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """400 rows, 20 broken (every kind of DEFECTS, a Latin-1 row, a 1 MiB + 1 field): exit 1, 380 planned,
    20 invalid audit rows, one per broken line, each with its reason."""
    from tenure.cli import app

    today = datetime.now(UTC).date()
    rows = fake_people(ROWS, seed=5, today=today)
    all_active(rows, today=today)
    defects = plant_defects(
        rows, count=int(ROWS * DEFECT_SHARE), seed=5, huge_field_chars=MAX_FIELD_CHARS + 1
    )
    assert set(DEFECTS) | {"latin1", "huge_field"} <= set(defects.values())
    csv_path = write_csv(
        tmp_path / "hris.csv", rows, latin1_lines=[line for line, kind in defects.items() if kind == "latin1"]
    )
    database_url = f"sqlite:///{tmp_path / 'audit.db'}"
    tenant = scim_server.tenant_url(f"defects-{uuid.uuid4().hex[:8]}")
    for group in sorted(load_policy(POLICY).managed_groups):  # the preflight wants every policy group
        await create_group(tenant, scim_server.token, group)
    for key, value in {
        "TENURE_DATABASE_URL": database_url,
        "TENURE_POLICY_FILE": str(POLICY),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": tenant,
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(csv_path),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)

    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["sync", "--full", "--dry-run"], catch_exceptions=False
    )

    assert result.exit_code == 1, result.output
    good = ROWS - len(defects)
    assert f"{good + len(defects)} employees seen, {good} planned" in " ".join(result.output.split())
    assert f"{len(defects)} invalid HR record(s) skipped" in result.output
    with session_scope(database_url) as session:
        audited = session.exec(select(AuditEvent).where(AuditEvent.action == "hris.record.invalid")).all()
    reset_engines()
    lines = Counter(event.details["row"] for event in audited)
    assert lines == Counter(set(defects))  # each broken line exactly once
    reasons = {event.details["row"]: event.reason for event in audited}
    assert all(reasons[line] for line in defects)
    latin1 = next(line for line, kind in defects.items() if kind == "latin1")
    huge = next(line for line, kind in defects.items() if kind == "huge_field")
    assert reasons[latin1].startswith("not valid utf-8 (first_name")
    assert reasons[huge] == f"title longer than {MAX_FIELD_CHARS} characters"
    assert {reasons[line] for line, kind in defects.items() if kind == "manager_loop"} <= {
        r for r in reasons.values() if r.startswith("manager loop: ")
    }
