"""A failed flow run on a real Prefect server tells ops once, through the hook every flow carries
(flows/notify.py) and the notifier the settings configure (a real aiosmtpd server with STARTTLS and AUTH)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from flows.lifecycle import joiner
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from tests.support.hris_data import COLUMNS, write_csv
from tests.support.smtp_server import SMTPServer, running_smtp_server

pytestmark = pytest.mark.slow

POLICY = """
birthright:
  - groups: [group-the-idp-lacks]
notify:
  failure: [{to: ops, template: run-failed}]
recipients: {ops: it-ops@example.com}
"""


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SMTPServer]:
    with running_smtp_server(tmp_path) as server:
        yield server


async def test_a_failed_joiner_run_sends_one_ops_message(
    scim_server: Any,
    prefect_server: Any,
    smtp: SMTPServer,
    tmp_path: Path,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id="E8", first_name="Alan", last_name="Turing", status="active", hire_date="2021-04-01"
    )
    write_csv(tmp_path / "hris.csv", [row])
    for key, value in {
        "TENURE_DATABASE_URL": fresh_sqlite_url,
        "TENURE_POLICY_FILE": str(tmp_path / "policy.yaml"),
        "TENURE_IDP__BASE_URL": scim_server.tenant_url(),  # a tenant without the policy's group: preflight fails
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(tmp_path / "hris.csv"),
        "TENURE_NOTIFY__SMTP_HOST": "localhost",
        "TENURE_NOTIFY__SMTP_PORT": str(smtp.port),
        "TENURE_NOTIFY__SMTP_USERNAME": smtp.user,
        "TENURE_NOTIFY__SMTP_PASSWORD": smtp.password,
        "SSL_CERT_FILE": str(smtp.ca_file),  # the default TLS context trusts the test server's certificate
    }.items():
        monkeypatch.setenv(key, value)
    state = await joiner("E8", return_state=True)
    assert state.is_failed() and "group-the-idp-lacks" in (state.message or "")
    [message] = smtp.messages
    body = message.get_payload(decode=True).decode()
    assert message["To"] == "it-ops@example.com" and message["Subject"].startswith(
        "Tenure run failed: joiner "
    )
    assert "entered Failed" in body and "group-the-idp-lacks" in body
    assert "Alan" not in body and smtp.password not in body
    with session_scope(fresh_sqlite_url) as session:
        [row_] = session.exec(select(AuditEvent).where(AuditEvent.action == "notify.send")).all()
    assert row_.outcome == Outcome.APPLIED and row_.employee_id == f"run:{row_.correlation_id}"
    assert message["Subject"].endswith(str(row_.correlation_id))
