"""The long-lived lifecycle runner (flows.runner) on a real Prefect server: it finds the deployments of the
lifecycle flows by flow name, claims a due run once (a second claim is refused by the server), runs it in this
process to Completed, and the audit rows carry that flow run's id."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Pending
from sqlmodel import select

from flows.runner import LifecycleRunner
from lifecycle.policy import load_policy
from models.audit import AuditEvent
from models.db import session_scope
from tests.support.hris_data import COLUMNS, write_csv
from tests.support.scim_server import create_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def tenure_env(
    scim_server: Any,
    prefect_server: Any,
    tmp_path: Path,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    base_url = scim_server.tenant_url()
    for group in load_policy(REPO / "examples" / "policy.yaml").managed_groups:
        await create_group(base_url, scim_server.token, group)
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id="E31",
        first_name="Radia",
        last_name="Perlman",
        department="Engineering",
        title="Engineer",
        location="London",
        employment_type="employee",
        status="active",
        hire_date="2021-04-01",
    )
    write_csv(tmp_path / "hris.csv", [row])
    for key, value in {
        "TENURE_DATABASE_URL": fresh_sqlite_url,
        "TENURE_POLICY_FILE": str(REPO / "examples" / "policy.yaml"),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": base_url,
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(tmp_path / "hris.csv"),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)
    return fresh_sqlite_url


async def test_runner_claims_once_and_runs_the_joiner_in_process(tenure_env: str) -> None:
    runner = LifecycleRunner(poll_seconds=0.2, limit=2)
    async with get_client() as client:
        flow_id = await client.create_flow_from_name("joiner")
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name=f"runner-e2e-{uuid.uuid4().hex[:6]}", entrypoint="flows.lifecycle.joiner"
        )
        assert deployment_id in await runner.deployments(client)
        run = await client.create_flow_run_from_deployment(deployment_id, parameters={"employee_id": "E31"})
        started = await runner.poll_once(client)
        assert started == 1
        assert await runner.poll_once(client) == 0  # claimed: no longer due, never started twice
        assert not await runner.claim(client, run)  # a second claimant (another runner, a worker) is refused
        future = runner._running[run.id]
        await asyncio.wrap_future(future)
        final = await client.read_flow_run(run.id)
        assert final.state is not None and final.state.is_completed(), final.state
        assert final.name == "joiner-E31"

        # A run claimed elsewhere first (Pending) is left alone.
        other = await client.create_flow_run_from_deployment(deployment_id, parameters={"employee_id": "E31"})
        await client.set_flow_run_state(other.id, Pending())
        assert await runner.poll_once(client) == 0
        assert (await client.read_flow_run(other.id)).state_type.value == "PENDING"
        await client.delete_flow_run(other.id)
    runner.stopping.set()
    with session_scope(os.environ["TENURE_DATABASE_URL"]) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.employee_id == "E31")).all()
    assert {r.correlation_id for r in rows} == {str(run.id)}
    assert {r.action for r in rows} >= {"idp.user.create", "idp.membership.add"}
