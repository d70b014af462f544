"""Notifications through the one door against a real local SMTP server (aiosmtpd with STARTTLS and AUTH), a real
scim2-server and a CSV HRIS: the messages are read back from what the server received.

- a hire produces exactly one manager message before day one, with the activation time on the manager's clock;
  a re-run sends none;
- a leaver's manager gets one message saying what is removed and when;
- a manager the HRIS does not know: the fallback recipient is told, and the audit row says so;
- an SMTP server that refuses: the account is still created, the message is retried on the next run, once;
- a failed run sends one ops message (ids only), however often the hook runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from connectors.hris.csv_export import CSVExportHRIS
from connectors.notify import SMTPNotifier
from connectors.protocols import Connectors
from engine.auditor import Auditor
from engine.notify import tell_failure
from engine.reconcile import reconcile
from engine.sync import SyncEngine, SyncOptions
from lifecycle.notices import RunFailure
from lifecycle.policy import Policy
from models.audit import AuditEvent, Outcome
from models.db import session_scope
from tests.contract.test_one_door import Tickets
from tests.contract.test_sync_scim import POLICY, World, make_world
from tests.support.scim_server import SCIMServer
from tests.support.smtp_server import SMTPServer, running_smtp_server

pytestmark = pytest.mark.slow

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)  # a Friday; the hire starts on Monday 4 January 2027
NOTIFY_POLICY = Policy.model_validate(
    {
        **POLICY.model_dump(),
        "prehire_days": 7,
        "default_timezone": "UTC",
        "location_timezones": {"Berlin": "Europe/Berlin", "London": "Europe/London"},
        "tickets": {"joiner": [{"purpose": "laptop", "title": "Laptop for {employee_id}"}]},
        "notify": {
            "joiner": [{"to": "manager", "when": "prehire", "template": "manager-new-hire"}],
            "leaver": [{"to": "manager", "when": "planned", "template": "manager-leaver"}],
            "failure": [{"to": "ops", "template": "run-failed"}],
        },
        "recipients": {"ops": "it-ops@example.com", "fallback": "hr-ops@example.com"},
    }
)
MANAGER = {
    "employee_id": "M0001",
    "first_name": "Grace",
    "last_name": "Hopper",
    "work_email": "grace.hopper@example.com",
    "department": "Engineering",
    "title": "Engineering Manager",
    "manager_id": "",
    "location": "Berlin",
    "employment_type": "Full-Time",
    "status": "active",
    "hire_date": "2020-01-06",
    "termination_date": "",
}


def _row(employee_id: str, first: str, last: str, **changes: str) -> dict[str, str]:
    return {
        **MANAGER,
        "employee_id": employee_id,
        "first_name": first,
        "last_name": last,
        "work_email": f"{first.lower()}.{last.lower()}@example.com",
        "title": "Software Engineer",
        "manager_id": "M0001",
        "location": "London",
        **changes,
    }


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SMTPServer]:
    with running_smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
async def world(scim_server: SCIMServer, tmp_path: Path, fresh_sqlite_url: str) -> AsyncIterator[World]:
    w = await make_world(scim_server, tmp_path, fresh_sqlite_url)
    w.rows = [MANAGER]
    w.write()
    try:
        yield w
    finally:
        await w.idp.aclose()


def _notifier(smtp: SMTPServer, **options: Any) -> SMTPNotifier:
    return SMTPNotifier(
        "localhost",
        smtp.port,
        sender="tenure@example.com",
        username=smtp.user,
        password=smtp.password,
        tls_context=smtp.client_tls(),
        **options,
    )


async def _reconcile(
    world: World, smtp: SMTPServer, employee_id: str, policy: Policy = NOTIFY_POLICY, tickets: Any = None
) -> Any:
    connectors = Connectors(
        hris=CSVExportHRIS(world.csv_path), idp=world.idp, ticketing=tickets, notifier=_notifier(smtp)
    )
    return await reconcile(
        employee_id,
        connectors=connectors,
        policy=policy,
        auditor=Auditor(world.database_url, actor="test"),
        now=NOW,
    )


def _notify_rows(world: World) -> list[AuditEvent]:
    with session_scope(world.database_url) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == "notify.send")).all())


def _text(message: Any) -> str:
    return str(message["Subject"]) + "\n" + message.get_payload(decode=True).decode()


async def test_a_hire_tells_the_manager_once_before_day_one_in_the_managers_time_zone(
    world: World, smtp: SMTPServer
) -> None:
    world.rows.append(_row("E0100", "Ada", "Lovelace", status="pending", hire_date="2027-01-04"))
    world.write()
    tickets = Tickets()
    report = await _reconcile(world, smtp, "E0100", tickets=tickets)
    assert report.ok, report.markdown()
    [message] = smtp.to("grace.hopper@example.com")
    text = _text(message)
    # 00:00 in London on the hire day is 01:00 on the Berlin manager's clock
    assert "Ada Lovelace's account will be active on Mon 4 Jan 2027 01:00 (Europe/Berlin)" in text
    [ticket] = tickets.by_reference.values()
    assert "groups: all-staff, engineering" in text and f"tickets: laptop ticket {ticket.id}." in text
    account = await world.idp.find_user_by_employee_id("E0100")
    assert account is not None and not account.active  # before day one
    [row] = _notify_rows(world)
    assert row.outcome == Outcome.APPLIED and row.details["recipient"] == "M0001"
    assert "grace.hopper" not in str(row.details) and "Lovelace" not in row.reason  # ids only in the audit

    again = await _reconcile(world, smtp, "E0100", tickets=tickets)
    assert again.ok and len(smtp.messages) == 1
    assert len(_notify_rows(world)) == 1


async def test_a_leavers_manager_hears_what_is_removed_and_when(world: World, smtp: SMTPServer) -> None:
    world.rows.append(_row("E0200", "Alan", "Turing", hire_date="2024-03-04"))
    world.write()
    quiet = NOTIFY_POLICY.model_copy(
        update={"notify": NOTIFY_POLICY.notify.model_copy(update={"joiner": []})}
    )
    assert (await _reconcile(world, smtp, "E0200", quiet)).ok
    assert smtp.messages == []
    world.rows[-1]["termination_date"] = "2027-01-08"
    world.write()
    report = await _reconcile(world, smtp, "E0200")
    assert report.ok, report.markdown()
    [message] = smtp.to("grace.hopper@example.com")
    text = _text(message)
    # 18:00 in London on the termination day, on the Berlin manager's clock
    assert (
        "Alan Turing's account alan.turing will be disabled on Fri 8 Jan 2027 19:00 (Europe/Berlin)" in text
    )
    assert "removed then: all-staff, engineering" in text
    assert (await _reconcile(world, smtp, "E0200")).ok
    assert len(smtp.messages) == 1


async def test_a_manager_unknown_to_the_hris_means_the_fallback_recipient_recorded(
    world: World, smtp: SMTPServer
) -> None:
    world.rows.append(
        _row("E0300", "Mei", "Chen", status="pending", hire_date="2027-01-04", manager_id="M9999")
    )
    world.write()
    assert (await _reconcile(world, smtp, "E0300")).ok
    [message] = smtp.messages
    assert message["To"] == "hr-ops@example.com"
    assert "Mei" not in _text(message) and "E0300's account will be active" in _text(message)
    [row] = _notify_rows(world)
    assert row.details["fallback"] is True and "manager M9999 not in the HRIS" in row.reason


async def test_a_refusing_smtp_server_never_blocks_provisioning_and_is_retried_next_run(
    world: World, smtp: SMTPServer
) -> None:
    world.rows.append(_row("E0400", "Kenji", "Sato", status="pending", hire_date="2027-01-04"))
    world.write()
    smtp.refuse = True
    report = await _reconcile(world, smtp, "E0400")
    assert [r.action.kind.value for r in report.failed] == ["notify"]
    accounts = await world.accounts()
    assert accounts["E0400"].groups == {"all-staff", "engineering"}  # provisioned all the same
    assert smtp.messages == []
    smtp.refuse = False
    retried = await _reconcile(world, smtp, "E0400")
    assert retried.ok and len(smtp.to("grace.hopper@example.com")) == 1
    assert (await _reconcile(world, smtp, "E0400")).ok and len(smtp.messages) == 1
    outcomes = sorted(r.outcome for r in _notify_rows(world))
    assert outcomes == [Outcome.APPLIED, Outcome.FAILED]


async def test_a_stalled_smtp_server_times_out_as_a_failed_step(world: World, smtp: SMTPServer) -> None:
    world.rows.append(_row("E0500", "Nia", "Okafor", status="pending", hire_date="2027-01-04"))
    world.write()
    smtp.stall = True
    connectors = Connectors(
        hris=CSVExportHRIS(world.csv_path),
        idp=world.idp,
        ticketing=None,
        notifier=_notifier(smtp, timeout=1.0),
    )
    report = await reconcile(
        "E0500",
        connectors=connectors,
        policy=NOTIFY_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=NOW,
    )
    [failed] = report.failed
    assert failed.action.kind.value == "notify" and "SMTP server localhost" in failed.detail
    assert await world.idp.find_user_by_employee_id("E0500") is not None


async def test_a_failed_run_sends_one_ops_message_with_ids_only(world: World, smtp: SMTPServer) -> None:
    run = RunFailure(
        flow_name="joiner", flow_run_id="0b4c-run", state="Failed", message="1 step failed (E0100)"
    )
    auditor = Auditor(world.database_url, actor="flow-run:0b4c-run", correlation_id="0b4c-run")
    for _ in range(2):  # a hook that runs twice (on_failure, then a retry of the hook) sends once
        report = await tell_failure(run, policy=NOTIFY_POLICY, notifier=_notifier(smtp), auditor=auditor)
        assert report.ok
    [message] = smtp.messages
    assert message["To"] == "it-ops@example.com"
    assert _text(message).startswith("Tenure run failed: joiner 0b4c-run")
    assert "entered Failed: 1 step failed (E0100)" in _text(message)


def test_a_template_naming_an_unknown_field_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['salary'\]"):
        Policy.model_validate(
            {
                "notify": {
                    "joiner": [{"to": "manager", "when": "prehire", "template": "mine"}],
                    "templates": {"mine": {"subject": "x", "body": "{display_name} earns {salary}"}},
                },
                "recipients": {"ops": "ops@example.com"},
            }
        )


async def test_the_nightly_sync_tells_the_manager_of_a_hire_it_creates_once(
    world: World, smtp: SMTPServer
) -> None:
    world.rows.append(_row("E0600", "Lucía", "Pérez", status="pending", hire_date="2027-01-04"))
    world.write()

    async def sync() -> Any:
        engine = SyncEngine(
            hris=CSVExportHRIS(world.csv_path),
            idp=world.idp,
            ticketing=None,
            policy=NOTIFY_POLICY,
            auditor=Auditor(world.database_url, actor="test"),
            options=SyncOptions(full=True),
            now=NOW,
            notifier=_notifier(smtp),
        )
        return await engine.run()

    assert (await sync()).ok
    [message] = smtp.to("grace.hopper@example.com")
    assert "Lucía Pérez's account will be active on Mon 4 Jan 2027 01:00 (Europe/Berlin)" in _text(message)
    assert (await sync()).ok and len(smtp.messages) == 1
