"""A refused HRIS credential through the CLI: exit 2 (a configuration error), the message names the setting to
check, the secret shows nowhere. Each vendor's fake answers as its API documents (tests/support/*_fake.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tenure.compose
from tenure.cli import app
from tenure.settings import HRISSettings
from tests.support.hibob_fake import HiBobFake
from tests.support.personio_fake import PersonioFake
from tests.support.workday_fake import WorkdayFake

POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
WRONG = "wrong-secret-value-4242"


@pytest.mark.parametrize(
    ("fake", "env", "named"),
    [
        (
            HiBobFake,
            {"KIND": "hibob", "SERVICE_USER_ID": HiBobFake.service_user_id, "TOKEN": WRONG},
            "TENURE_HRIS__TOKEN",
        ),
        (
            PersonioFake,
            {"KIND": "personio", "CLIENT_ID": PersonioFake.client_id, "CLIENT_SECRET": WRONG},
            "TENURE_HRIS__CLIENT_SECRET",
        ),
        (
            WorkdayFake,
            {
                "KIND": "workday",
                "BASE_URL": WorkdayFake.base_url,
                "TENANT": WorkdayFake.tenant,
                "USERNAME": WorkdayFake.username,
                "PASSWORD": WRONG,
                "REPORT": WorkdayFake.report,
            },
            "TENURE_HRIS__PASSWORD",
        ),
    ],
    ids=["hibob", "personio", "workday"],
)
def test_refused_hris_credential_exits_2_naming_the_setting(
    fake: Any, env: dict[str, str], named: str, fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tenure plan 1001` with a wrong HRIS secret: exit 2, "check TENURE_HRIS__…", no secret in the output."""
    world = fake()
    build = tenure.compose.build_hris

    def with_fake(settings: HRISSettings, **kwargs: Any) -> Any:
        return build(settings, transport=world.transport, sleep=_no_sleep, **kwargs)

    monkeypatch.setattr(tenure.compose, "build_hris", with_fake)
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(POLICY))
    for key, value in env.items():
        monkeypatch.setenv(f"TENURE_HRIS__{key}", value)
    result = CliRunner().invoke(app, ["plan", "1001"])
    assert result.exit_code == 2, result.output
    assert named in " ".join(result.output.split())
    assert WRONG not in result.output
    assert any(r.url.host.endswith((".com", ".de", ".test")) for r in world.requests)  # the fake was asked


async def _no_sleep(_: float) -> None:
    return None
