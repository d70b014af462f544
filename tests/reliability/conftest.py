"""Reliability harness fixtures: sizes (CI by default, full with ``TENURE_STRESS=1`` / ``make stress``) and a
fault proxy in front of the module's scim2-server (the ``scim_server`` fixture of tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.scim_server import SCIMServer

STRESS = os.environ.get("TENURE_STRESS", "").strip() not in ("", "0", "false", "no")


def size(ci: int, stress: int) -> int:
    """``ci`` in a normal run, ``stress`` under ``TENURE_STRESS=1``."""
    return stress if STRESS else ci


@pytest.fixture
async def fault_proxy(scim_server: SCIMServer) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the module's scim2-server, faults off until the test turns them on."""
    async with FaultProxy(upstream=f"http://127.0.0.1:{scim_server.port}") as proxy:
        yield proxy
