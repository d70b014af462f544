"""The HRIS contract against the HiBob connector and a stateful HiBob fake (tests/support/hibob_fake.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.protocols import HRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import HRISContract, Sleeps
from tests.support.hibob_fake import HiBobFake


class TestHiBobContract(HRISContract):
    SETTINGS_NAMED = ("TENURE_HRIS__SERVICE_USER_ID", "TENURE_HRIS__TOKEN")

    @pytest.fixture
    def world(self) -> HiBobFake:
        return HiBobFake()

    def connect(self, world: HiBobFake, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        token = "hibob-wrong-token-0000" if wrong_secret else world.token
        settings = HRISSettings(
            kind="hibob",
            service_user_id=world.service_user_id,
            token=SecretStr(token),
            requests_per_second=1000,  # the fake counts its 50/min itself; the tests do not wait for it
        )
        return build_hris(settings, transport=world.transport, sleep=sleep)

    def secrets(self, world: HiBobFake) -> list[str]:
        return [world.token, f"{world.service_user_id}:{world.token}"]
