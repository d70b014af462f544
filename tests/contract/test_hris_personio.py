"""The HRIS contract against the Personio connector and a stateful Personio fake (tests/support/personio_fake.py):
once on the v2 Persons & Employments API, once on the v1 employees list it falls back to."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.protocols import HRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import HRISContract, Sleeps
from tests.support.personio_fake import PersonioFake


class _Personio(HRISContract):
    SETTINGS_NAMED = ("TENURE_HRIS__CLIENT_ID", "TENURE_HRIS__CLIENT_SECRET")

    def connect(self, world: PersonioFake, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        secret = "papi-wrong-secret-0000" if wrong_secret else world.client_secret
        settings = HRISSettings(
            kind="personio",
            client_id=world.client_id,
            client_secret=SecretStr(secret),
            requests_per_second=1000,
        )
        return build_hris(settings, transport=world.transport, sleep=sleep)

    def secrets(self, world: PersonioFake) -> list[str]:
        return [world.client_secret, *world.tokens]


class TestPersonioV2Contract(_Personio):
    ROSTER_PAGES = 3  # 120 persons at the v2 maximum of 50 per page
    UNMAPPED = frozenset({"personal_email", "location"})  # not in v2 persons/employments

    @pytest.fixture
    def world(self) -> PersonioFake:
        return PersonioFake()


class TestPersonioV1FallbackContract(_Personio):
    ROSTER_PAGES = 2  # 120 employees at the v1 maximum of 100 per page
    UNMAPPED = frozenset({"personal_email"})

    @pytest.fixture
    def world(self) -> PersonioFake:
        world = PersonioFake()
        world.v2_available = False
        return world
