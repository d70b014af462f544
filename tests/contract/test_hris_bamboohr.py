"""The HRIS contract against the BambooHR connector and a stateful BambooHR fake (tests/support/bamboohr_fake.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.protocols import HRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import HRISContract, Sleeps
from tests.support.bamboohr_fake import BambooHRFake


class TestBambooHRContract(HRISContract):
    SETTINGS_NAMED = ("TENURE_HRIS__API_KEY",)

    @pytest.fixture
    def world(self) -> BambooHRFake:
        return BambooHRFake()

    def connect(self, world: BambooHRFake, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        key = "bhr-wrong-key-0000" if wrong_secret else world.api_key
        settings = HRISSettings(
            kind="bamboohr", subdomain=world.company, api_key=SecretStr(key), requests_per_second=1000
        )
        return build_hris(settings, transport=world.transport, sleep=sleep)

    def secrets(self, world: BambooHRFake) -> list[str]:
        return [world.api_key, f"{world.api_key}:x"]
