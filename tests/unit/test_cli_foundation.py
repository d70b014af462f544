"""`tenure config check`, `tenure audit verify` and `tenure audit export`: output and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from models.audit import AuditEventBase, Outcome, record_many
from models.db import get_engine, session_scope
from tenure.cli import app

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
runner = CliRunner()


@pytest.fixture
def env(fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(POLICY))
    return fresh_sqlite_url


def _seed(url: str) -> None:
    with session_scope(url) as session:
        record_many(
            session=session,
            events=[
                AuditEventBase(
                    actor="cli:t",
                    action="idp.user.create",
                    target_system="scim",
                    employee_id=emp,
                    outcome=Outcome.APPLIED,
                    details={"n": n},
                )
                for n, emp in enumerate(["E1", "E2", "E1"])
            ],
        )


def test_config_check_masks_secrets(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """config check exits 0, shows the settings, and never prints a secret's value."""
    monkeypatch.setenv("TENURE_IDP__TOKEN", "tok-very-secret-123")
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "TENURE_IDP__TOKEN" in result.output and "********" in result.output
    assert "tok-very-secret-123" not in result.output
    assert "configuration OK" in result.output


def test_bad_setting_exits_2_naming_the_field(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed setting gives exit 2 and names the variable; nothing is written."""
    monkeypatch.setenv("TENURE_IDP__MAX_ATTEMPTS", "lots")
    monkeypatch.setenv("TENURE_DATABASE_URL", env.replace("tenure.db", "never.db"))
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "TENURE_IDP__MAX_ATTEMPTS" in result.output
    assert not Path(env.removeprefix("sqlite:///").replace("tenure.db", "never.db")).exists()


def test_bad_policy_exits_2_naming_the_field(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy file with a bad value gives exit 2 and names the field path."""
    bad = tmp_path / "policy.yaml"
    bad.write_text("prehire_days: -3\nbirthright:\n  - groups: []\n")
    monkeypatch.setenv("TENURE_POLICY_FILE", str(bad))
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "prehire_days" in result.output and "birthright.0.groups" in result.output


def test_unreachable_database_is_a_clear_error(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable PostgreSQL gives exit 2 and a one-line reason, not a traceback; no password shown."""
    monkeypatch.setenv("TENURE_DATABASE_URL", "postgresql://tenure:hunter22@127.0.0.1:1/tenure")
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 2
    assert "cannot open the database" in result.output
    assert "hunter22" not in result.output and "Traceback" not in result.output


def test_verify_ok_then_tampered(env: str) -> None:
    """audit verify exits 0 on an untouched log and 1 naming the row after tampering."""
    _seed(env)
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "3 events" in ok.output
    with get_engine(env).begin() as conn:
        conn.execute(text("UPDATE audit_event SET outcome = 'skipped' WHERE seq = 2"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "seq 2" in broken.output


def test_export_jsonl_and_csv_with_filters(env: str) -> None:
    """export writes jsonl and csv, filtered by employee, with hashes."""
    _seed(env)
    jsonl = runner.invoke(app, ["audit", "export", "--format", "jsonl", "--employee", "E1"])
    assert jsonl.exit_code == 0
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["employee_id"] for r in rows] == ["E1", "E1"] and all(len(r["hash"]) == 64 for r in rows)
    as_csv = runner.invoke(app, ["audit", "export", "--format", "csv", "--since", "2000-01-01"])
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert as_csv.exit_code == 0 and [r["seq"] for r in parsed] == ["1", "2", "3"]
    future = runner.invoke(app, ["audit", "export", "--since", "2999-01-01"])
    assert future.exit_code == 0 and future.stdout == ""


def test_export_rejects_bad_since(env: str) -> None:
    """A --since that is not ISO-8601 is a usage error (exit 2)."""
    result = runner.invoke(app, ["audit", "export", "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO-8601" in result.output


@pytest.mark.parametrize(
    ("env_vars", "named"),
    [
        (
            {"TENURE_IDP__KIND": "entra", "TENURE_IDP__CLIENT_ID": "c", "TENURE_IDP__CLIENT_SECRET": "s"},
            "TENANT_ID",
        ),
        (
            {"TENURE_IDP__KIND": "entra", "TENURE_IDP__TENANT_ID": "t", "TENURE_IDP__CLIENT_SECRET": "s"},
            "CLIENT_ID",
        ),
        ({"TENURE_IDP__KIND": "google", "TENURE_IDP__SUBJECT": "admin@example.com"}, "CREDENTIALS_FILE"),
    ],
    ids=["entra-tenant", "entra-client", "google-credentials"],
)
def test_missing_directory_settings_exit_2_naming_them(
    env: str, monkeypatch: pytest.MonkeyPatch, env_vars: dict[str, str], named: str
) -> None:
    """Entra without a tenant or client id, Google without a credentials file: exit 2 naming the setting."""
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["plan", "E1"])
    assert result.exit_code == 2, result.output
    assert f"TENURE_IDP__{named}" in result.output
