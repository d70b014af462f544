"""The HRIS contract against the CSV export connector (a file rewritten after every HR change)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.protocols import HRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import HRISContract, Sleeps
from tests.support.hris_fake import CSVWorld


class TestCSVExportContract(HRISContract):
    HTTP = False

    @pytest.fixture
    def world(self, tmp_path: Path) -> CSVWorld:
        return CSVWorld(tmp_path / "hris.csv")

    def connect(self, world: CSVWorld, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        return build_hris(HRISSettings(kind="csv", path=world.path))
