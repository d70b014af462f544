"""Who is told what and when (lifecycle/notices.py, pure), the policy's ``notify:`` validation, ``config check``
exit 2 for a template naming an unknown field, and the incoming-webhook notifier's HTTP contract (respx)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr
from typer.testing import CliRunner

from connectors.errors import PermanentAPIError, RetryableAPIError
from connectors.notify import RoutedNotifier, WebhookNotifier
from lifecycle.actions import Notify
from lifecycle.notices import RunFailure, failure_notices, local_time, notices, with_ticket_ids
from lifecycle.planner import plan
from lifecycle.policy import Policy
from models.domain import Account, Employee, EmployeeStatus, Notice
from tenure.cli.app import app
from tenure.compose import build_notifier
from tenure.settings import NotifySettings

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy.model_validate(
    {
        "birthright": [{"groups": ["all-staff"]}],
        "location_timezones": {"Berlin": "Europe/Berlin", "New York": "America/New_York"},
        "notify": {
            "joiner": [{"to": "manager", "when": "prehire", "template": "manager-new-hire"}],
            "leaver": [{"to": "manager", "when": "planned", "template": "manager-leaver"}],
            "failure": [{"to": "ops", "template": "run-failed"}],
        },
        "recipients": {"ops": "it-ops@example.com"},
    }
)
MANAGER = Employee(
    employee_id="M1",
    first_name="Grace",
    last_name="Hopper",
    work_email="grace@example.com",
    location="New York",
    status=EmployeeStatus.ACTIVE,
)
HIRE = Employee(
    employee_id="E1",
    first_name="Ada",
    last_name="Lovelace",
    manager_id="M1",
    location="Berlin",
    status=EmployeeStatus.PENDING,
    hire_date=date(2027, 1, 4),
)


def _joiner(
    manager: Employee | None, employee: Employee = HIRE, sent: frozenset[str] = frozenset()
) -> list[Notify]:
    return notices(plan(employee, None, POLICY, NOW), employee, None, manager, POLICY, NOW, sent=sent)


def test_the_activation_time_is_shown_on_the_recipients_clock() -> None:
    [notice] = _joiner(MANAGER)
    # 00:00 in Berlin on Monday is 18:00 on Sunday in New York
    assert "active on Sun 3 Jan 2027 18:00 (America/New_York)" in notice.body
    assert notice.to == "grace@example.com" and notice.recipient_id == "M1" and not notice.fallback
    assert notice.key == "E1:notify:manager-new-hire:manager:2027-01-04"


def test_the_tickets_the_plan_opened_are_named_by_their_ids() -> None:
    policy = POLICY.model_copy(
        update={
            "tickets": Policy.model_validate(
                {"tickets": {"joiner": [{"purpose": "laptop", "title": "L"}]}}
            ).tickets
        }
    )
    the_plan = plan(HIRE, None, policy, NOW)
    [notice] = notices(the_plan, HIRE, None, MANAGER, policy, NOW)
    assert "tickets: laptop." in notice.body
    named = with_ticket_ids(notice, {"laptop": "RT#123"})
    assert "tickets: laptop ticket RT#123." in named.body and named.key == notice.key
    assert with_ticket_ids(notice, {"badge": "9"}) == notice


def test_a_notice_already_sent_is_not_planned_again() -> None:
    [notice] = _joiner(MANAGER)
    assert _joiner(MANAGER, sent=frozenset({notice.key})) == []


@pytest.mark.parametrize(
    ("manager", "manager_id", "why"),
    [
        (None, "M1", "manager M1 not in the HRIS"),
        (MANAGER.model_copy(update={"work_email": None}), "M1", "manager M1 has no work e-mail"),
        (None, None, "no manager on record"),
    ],
)
def test_a_manager_who_resolves_to_nobody_means_the_fallback_recorded_and_ids_only(
    manager: Employee | None, manager_id: str | None, why: str
) -> None:
    employee = HIRE.model_copy(update={"manager_id": manager_id})
    [notice] = _joiner(manager, employee)
    assert notice.to == "it-ops@example.com" and notice.fallback and why in notice.reason
    assert "Lovelace" not in notice.body + notice.headline and "E1's account" in notice.body
    assert "(UTC)" in notice.body  # the fallback's clock: the policy's default time zone


def test_a_leaver_notice_says_what_is_removed_and_when_once_per_termination() -> None:
    leaver = HIRE.model_copy(
        update={
            "status": EmployeeStatus.ACTIVE,
            "hire_date": date(2024, 1, 1),
            "termination_date": date(2027, 1, 8),
        }
    )
    account = Account(
        id="u1",
        user_name="ada.lovelace",
        employee_id="E1",
        active=True,
        groups=frozenset({"all-staff", "own"}),
    )
    the_plan = plan(leaver, account, POLICY, NOW)
    [notice] = notices(the_plan, leaver, account, MANAGER, POLICY, NOW)
    assert "disabled on Fri 8 Jan 2027 12:00 (America/New_York)" in notice.body  # 18:00 Berlin
    assert "removed then: all-staff;" in notice.body and "never (kept disabled)" in notice.body
    assert notice.key.endswith(":2027-01-08")
    disabled = account.model_copy(update={"active": False})
    assert notices(plan(leaver, disabled, POLICY, NOW), leaver, disabled, MANAGER, POLICY, NOW) == []


def test_a_plan_without_a_creation_or_a_disable_tells_nobody() -> None:
    active = HIRE.model_copy(update={"status": EmployeeStatus.ACTIVE, "hire_date": date(2024, 1, 1)})
    account = Account(
        id="u1", user_name="ada.lovelace", employee_id="E1", active=True, groups=frozenset({"all-staff"})
    )
    assert notices(plan(active, account, POLICY, NOW), active, account, MANAGER, POLICY, NOW) == []


def test_a_failure_notice_is_keyed_by_the_run() -> None:
    [notice] = failure_notices(RunFailure("sync", "run-7", "Crashed", "boom"), POLICY)
    assert notice.to == "it-ops@example.com" and notice.key == "run:run-7:notify:run-failed:ops:run-7"
    assert notice.body == "Flow run run-7 of sync entered Crashed: boom"


def test_local_time_names_the_zone() -> None:
    from zoneinfo import ZoneInfo

    assert local_time(datetime(2026, 1, 5, 8, 0, tzinfo=UTC), ZoneInfo("Europe/Berlin")) == (
        "Mon 5 Jan 2026 09:00 (Europe/Berlin)"
    )


@pytest.mark.parametrize(
    ("notify", "recipients", "message"),
    [
        (
            {
                "joiner": [{"to": "manager", "when": "prehire", "template": "t"}],
                "templates": {"t": {"subject": "{display_name}", "body": "{salary}"}},
            },
            {"ops": "o@x"},
            r"unknown field\(s\) \['salary'\]",
        ),
        (
            {
                "joiner": [{"to": "manager", "when": "prehire", "template": "t"}],
                "templates": {"t": {"subject": "{x!r}", "body": ""}},
            },
            {"ops": "o@x"},
            "conversion",
        ),
        (
            {
                "failure": [{"to": "ops", "template": "run-failed"}],
                "templates": {"run-failed": {"subject": "{display_name}", "body": ""}},
            },
            {"ops": "o@x"},
            "display_name",
        ),
        (
            {"joiner": [{"to": "manager", "when": "prehire", "template": "nope"}]},
            {"ops": "o@x"},
            "unknown template 'nope'",
        ),
        (
            {"joiner": [{"to": "manager", "when": "hired", "template": "manager-new-hire"}]},
            {"ops": "o@x"},
            "when 'hired'",
        ),
        ({"failure": [{"to": "pager", "template": "run-failed"}]}, {"ops": "o@x"}, "recipient 'pager'"),
        ({"joiner": [{"to": "manager", "when": "prehire", "template": "manager-new-hire"}]}, {}, "fallback"),
    ],
)
def test_notify_policy_problems_fail_at_load(notify: dict, recipients: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy.model_validate({"notify": notify, "recipients": recipients})


def test_config_check_exits_2_for_a_template_naming_an_unknown_field(
    tmp_path: Path, fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "notify:\n"
        "  joiner:  [{to: manager, when: prehire, template: manager-new-hire}]\n"
        "  templates:\n"
        "    manager-new-hire: {subject: 'New hire', body: '{display_name} starts, salary {salary}'}\n"
        "recipients: {ops: it-ops@example.com}\n"
    )
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(policy))
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 2, result.output
    assert "salary" in result.output and "notify" in result.output


def test_the_issues_policy_shape_loads() -> None:
    policy = Policy.model_validate(
        {
            "notify": {
                "joiner": [{"to": "manager", "when": "prehire", "template": "manager-new-hire"}],
                "leaver": [{"to": "manager", "when": "planned", "template": "manager-leaver"}],
                "failure": [{"to": "ops", "template": "run-failed"}],
            },
            "recipients": {"ops": "it-ops@example.com"},
        }
    )
    assert policy.fallback_recipient == "it-ops@example.com"


WEBHOOK = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX"


@respx.mock
async def test_the_webhook_posts_text_and_never_shows_its_url() -> None:
    route = respx.post(WEBHOOK).respond(200, text="ok")
    notifier = build_notifier(NotifySettings(webhook_url=SecretStr(WEBHOOK)))
    assert isinstance(notifier, RoutedNotifier) and isinstance(notifier.webhook, WebhookNotifier)
    async with notifier:
        await notifier.send(Notice(key="k", to="webhook", subject="Tenure run failed", body="run 7"))
        with pytest.raises(PermanentAPIError, match="TENURE_NOTIFY__SMTP_HOST"):  # an address needs e-mail
            await notifier.send(Notice(key="k2", to="grace@example.com", subject="New hire", body="Ada"))
    assert json.loads(route.calls.last.request.content) == {"text": "*Tenure run failed*\nrun 7"}
    assert route.call_count == 1 and "XXXXsecretXXXX" not in repr(notifier)


@respx.mock
async def test_a_webhook_that_fails_raises_a_scrubbed_connector_error_without_retrying_the_post() -> None:
    route = respx.post(WEBHOOK).mock(return_value=httpx.Response(503, text=f"down; you posted to {WEBHOOK}"))
    notifier = build_notifier(NotifySettings(webhook_url=SecretStr(WEBHOOK)))
    assert notifier is not None
    async with notifier:
        with pytest.raises(RetryableAPIError) as caught:
            await notifier.send(Notice(key="k", to="webhook", subject="s", body="b"))
    assert route.call_count == 1
    assert "XXXXsecretXXXX" not in str(caught.value)


def test_an_account_created_long_after_the_hire_day_is_a_backfill_and_tells_nobody() -> None:
    backfill = HIRE.model_copy(update={"status": EmployeeStatus.ACTIVE, "hire_date": date(2020, 1, 6)})
    assert _joiner(MANAGER, backfill) == []
    on_the_day = HIRE.model_copy(update={"status": EmployeeStatus.ACTIVE, "hire_date": date(2027, 1, 1)})
    [notice] = _joiner(MANAGER, on_the_day)
    assert "active on Fri 1 Jan 2027 07:00 (America/New_York)" in notice.body  # created now, active now


def test_config_check_masks_the_smtp_password_and_the_webhook_url(
    fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(Path("examples/policy.yaml").resolve()))
    monkeypatch.setenv("TENURE_NOTIFY__SMTP_PASSWORD", "smtp-very-secret-42")
    monkeypatch.setenv("TENURE_NOTIFY__WEBHOOK_URL", WEBHOOK)
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "smtp-very-secret-42" not in result.output and "XXXXsecretXXXX" not in result.output
    assert "TENURE_NOTIFY__SMTP_PASSWORD" in result.output


def test_an_adopted_employee_is_nobodys_news() -> None:
    """Adoption (issue #18): someone hired today, before an adoption date set ahead (TENURE_ADOPT_BEFORE), gets
    an account without the manager's new-hire message; the same person planned as a joiner is announced."""
    hired_today = HIRE.model_copy(update={"hire_date": date(2027, 1, 1), "status": EmployeeStatus.ACTIVE})
    joiner = plan(hired_today, None, POLICY, NOW)
    adopted = plan(hired_today, None, POLICY, NOW, adopt_before=date(2027, 1, 2))
    assert joiner.event == "joiner" and adopted.event == "adopt"
    assert notices(joiner, hired_today, None, MANAGER, POLICY, NOW)  # within the new-hire window
    assert notices(adopted, hired_today, None, MANAGER, POLICY, NOW) == []
