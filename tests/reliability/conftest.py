"""Reliability harness fixtures: sizes (CI by default, full with ``TENURE_STRESS=1`` / ``make stress``), one real
scim2-server per module, and a fault proxy in front of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.scim_server import SCIMServer, running_scim_server

STRESS = os.environ.get("TENURE_STRESS", "").strip() not in ("", "0", "false", "no")


def size(ci: int, stress: int) -> int:
    """``ci`` in a normal run, ``stress`` under ``TENURE_STRESS=1``."""
    return stress if STRESS else ci


@pytest.fixture(scope="module")
def scim_server() -> Iterator[SCIMServer]:
    """One real scim2-server for the module (each test takes its own tenant), stopped by PID."""
    with running_scim_server(token=f"scim-reliability-{os.getpid()}-token") as server:
        yield server


@pytest.fixture
async def fault_proxy(scim_server: SCIMServer) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the module's scim2-server, faults off until the test turns them on."""
    async with FaultProxy(upstream=f"http://127.0.0.1:{scim_server.port}") as proxy:
        yield proxy
