"""The HRIS contract against the Workday connector and a stateful Workday fake (RaaS + Get_Workers;
tests/support/workday_fake.py)."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from pydantic import SecretStr

from connectors.protocols import HRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import HRISContract, Sleeps
from tests.support.workday_fake import WorkdayFake


class TestWorkdayContract(HRISContract):
    SETTINGS_NAMED = ("TENURE_HRIS__USERNAME", "TENURE_HRIS__PASSWORD")

    @pytest.fixture
    def world(self) -> WorkdayFake:
        return WorkdayFake()

    def connect(self, world: WorkdayFake, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        password = (
            "wd-refused-9f3k-0000" if wrong_secret else world.password
        )  # no word of a setting name in it
        settings = HRISSettings(
            kind="workday",
            base_url=world.base_url,
            tenant=world.tenant,
            username=world.username,
            password=SecretStr(password),
            report=world.report,
            requests_per_second=1000,
        )
        return build_hris(settings, transport=world.transport, sleep=sleep)

    def secrets(self, world: WorkdayFake) -> list[str]:
        return [world.password, escape(world.password), f"{world.user}:{world.password}"]
