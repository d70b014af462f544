"""The lifecycle flows on a real Prefect server: named runs, per-action task runs, artifacts, audit rows linked to
the flow run, future-dated steps booked as scheduled flow runs, and approvals through a pause form."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort
from sqlmodel import select

from flows.lifecycle import joiner, reconcile_employee
from flows.orchestration import approve_in_ui, schedule_reconcile
from lifecycle.actions import RequestApproval, Schedule
from lifecycle.policy import load_policy
from models.audit import AuditEvent
from models.db import session_scope
from tests.support.hris_data import COLUMNS, write_csv
from tests.support.scim_server import create_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _idp(scim_server: Any) -> Any:
    """A SCIM connector on this test's tenant (the one ``tenure_env`` points Tenure at)."""
    from pydantic import SecretStr

    from tenure.compose import build_identity_provider
    from tenure.settings import IdPSettings

    return build_identity_provider(
        IdPSettings(base_url=os.environ["TENURE_IDP__BASE_URL"], token=SecretStr(scim_server.token))
    )


@pytest.fixture
async def tenure_env(
    scim_server,
    prefect_server,
    tmp_path: Path,
    fresh_sqlite_url: str,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    base_url = scim_server.tenant_url()
    for group in load_policy(REPO / "examples" / "policy.yaml").managed_groups:
        await create_group(base_url, scim_server.token, group)
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id="E7",
        first_name="Ada",
        last_name="Lovelace",
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
    yield fresh_sqlite_url


async def test_joiner_flow_run_is_named_audited_and_leaves_an_artifact(tenure_env: str) -> None:
    """joiner("E7") completes as run "joiner-E7"; each action is a task run; audit rows carry the run id."""
    state = await joiner("E7", return_state=True)
    assert state.is_completed(), state.message
    async with get_client() as client:
        runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
        run = next(r for r in runs if r.name == "joiner-E7")
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])), limit=50
        )
        artifact = await client.read_latest_artifacts(limit=50)
    names = {t.name for t in tasks}
    assert "create_account-E7" in names and "add_membership-E7-engineering" in names  # ids, not names
    assert not any("lovelace" in name for name in names)
    markdown = next(a for a in artifact if a.key == "lifecycle-e7").data
    assert "| directory | create_account | E7 | applied |" in markdown and "lovelace" not in markdown.lower()
    with session_scope(tenure_env) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.employee_id == "E7")).all()
    assert rows and {r.correlation_id for r in rows} == {str(run.id)}
    assert {r.action for r in rows} >= {"idp.user.create", "idp.membership.add"}
    assert "Lovelace" not in str([r.details for r in rows])  # ids and group names only, no names

    again = await reconcile_employee("E7", return_state=True)
    assert again.is_completed() and "0 applied" in (again.message or ""), again.message


async def test_failed_step_fails_the_run_and_the_next_run_completes_it(
    tenure_env: str,
    scim_server,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step that fails (the IdP refuses one membership) is audited, does not undo the others, and ends the run
    Failed with a summary naming it; once the IdP accepts it, the next run completes exactly what was left."""
    from connectors.errors import PermanentAPIError
    from connectors.idp.scim import SCIMIdentityProvider

    real_add = SCIMIdentityProvider.add_member
    async with _idp(scim_server) as idp:
        github = {g.name: g.id for g in await idp.list_groups()}["github-users"]

    async def refusing_add(self: SCIMIdentityProvider, group_id: str, account_id: str) -> None:
        if group_id == github:
            raise PermanentAPIError("mutability: members of github-users are read-only", source="scim")
        await real_add(self, group_id, account_id)

    monkeypatch.setattr(SCIMIdentityProvider, "add_member", refusing_add)
    state = await joiner("E7", return_state=True)
    assert state.is_failed()
    assert "1 failed" in (state.message or "") and "add_membership-E7-github-users" in (state.message or "")
    # the UI shows the failed step red: its task run is Failed with the connector's message; the others green
    async with get_client() as client:
        runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
        run = next(r for r in runs if r.name == "joiner-E7" and r.state is not None and r.state.is_failed())
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])), limit=50
        )
        logs = await _flow_run_logs(client, run.id)
    by_name = {t.name: t.state for t in tasks}
    failed = by_name["add_membership-E7-github-users"]
    assert failed is not None and failed.is_failed(), failed
    assert "members of github-users are read-only" in (failed.message or "")
    assert by_name["add_membership-E7-engineering"].is_completed()  # type: ignore[union-attr]
    assert by_name["create_account-E7"].is_completed()  # type: ignore[union-attr]
    steps = [line for line in logs if line.startswith(("applied ", "failed ", "skipped "))]
    assert len(steps) == len(tasks)  # one line per step (every step of this run was a task run)
    assert "failed add_membership-E7-github-users: " in "\n".join(steps)
    assert not any("Lovelace" in line or "ada.lovelace" in line for line in steps)
    with session_scope(tenure_env) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.employee_id == "E7")).all()
    outcomes = {
        (r.action, r.target_id if r.action != "idp.membership.add" else r.details.get("target"), r.outcome)
        for r in rows
    }
    assert ("idp.membership.add", "github-users", "failed") in outcomes
    assert ("idp.membership.add", "engineering", "applied") in outcomes  # the other steps stand

    monkeypatch.setattr(SCIMIdentityProvider, "add_member", real_add)
    again = await reconcile_employee("E7", return_state=True)
    assert again.is_completed(), again.message
    assert (again.message or "").split(": ", 1)[1].startswith("1 applied"), again.message


async def _flow_run_logs(client: Any, flow_run_id: uuid.UUID) -> list[str]:
    """The flow run's log messages (its tasks' too), once the API has them (logs are sent in the background)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    for _ in range(50):
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        if any(log.message.startswith("joiner E7:") or log.message.startswith("adopt E7:") for log in logs):
            return [log.message for log in logs]
        await asyncio.sleep(0.2)
    return [log.message for log in logs]


async def test_policy_group_missing_in_the_idp_refuses_the_run_before_any_change(
    tenure_env: str,
    scim_server,  # type: ignore[no-untyped-def]
) -> None:
    """Preflight: a group the policy grants but the IdP lacks fails the run naming it, with nothing applied; once
    the group exists the run provisions everything."""
    import httpx

    base_url = os.environ["TENURE_IDP__BASE_URL"]
    headers = {"Authorization": f"Bearer {scim_server.token}"}
    groups = httpx.get(f"{base_url}Groups", headers=headers).json()["Resources"]
    crm = next(g["id"] for g in groups if g["displayName"] == "crm-users")
    assert httpx.delete(f"{base_url}Groups/{crm}", headers=headers).status_code in (200, 204)
    try:
        state = await joiner("E7", return_state=True)
        assert state.is_failed() and "crm-users" in (state.message or "")
        with session_scope(tenure_env) as session:
            rows = session.exec(select(AuditEvent).where(AuditEvent.employee_id == "E7")).all()
        assert [r for r in rows if r.outcome == "applied"] == []
        async with _idp(scim_server) as idp:
            assert await idp.find_user_by_employee_id("E7") is None
    finally:
        await create_group(base_url, scim_server.token, "crm-users")
    again = await joiner("E7", return_state=True)
    assert again.is_completed(), again.message


async def test_future_step_is_booked_once_as_a_scheduled_run(prefect_server) -> None:  # type: ignore[no-untyped-def]
    """A SCHEDULE action books one Scheduled run of reconcile-employee/reconcile-employee at its instant,
    however often."""
    async with get_client() as client:
        flow_id = await client.create_flow(reconcile_employee)
        await client.create_deployment(
            flow_id=flow_id, name="reconcile-employee", entrypoint="flows/lifecycle.py:reconcile_employee"
        )
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    action = Schedule(
        employee_id=f"E-{uuid.uuid4().hex[:6]}", event="enable", at=at, reason="enable on the hire day"
    )
    first, second = await schedule_reconcile(action), await schedule_reconcile(action)
    assert first == second
    async with get_client() as client:
        run = await client.read_flow_run(uuid.UUID(first))
    assert run.state is not None and run.state.is_scheduled()
    assert run.next_scheduled_start_time == at and run.parameters == {"employee_id": action.employee_id}


@flow(name="approval-probe")
async def approval_probe(hours: float) -> tuple[bool, str, str]:
    return await approve_in_ui(
        RequestApproval(
            employee_id="E9",
            group="prod-admin",
            reason="privileged",
            timeout_hours=hours,
            approvers=("lead",),
        )
    )


async def test_approval_form_grants_and_timeout_denies(prefect_server) -> None:  # type: ignore[no-untyped-def]
    """A paused approval resumes with the approver's answer; no answer before the timeout means denied."""
    from prefect.flow_runs import resume_flow_run

    running = asyncio.create_task(approval_probe(0.05))
    paused = None
    async with get_client() as client:
        for _ in range(120):
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=20)
            paused = next((r for r in runs if r.state and r.state.is_paused()), None)
            if paused:
                break
            await asyncio.sleep(0.5)
    assert paused is not None, "the approval run never paused"
    await resume_flow_run(
        paused.id, run_input={"approve": True, "approver": "lead", "reason": "on-call rota"}
    )
    assert await asyncio.wait_for(running, 120) == (True, "lead", "on-call rota")

    approved, approver, _ = await approval_probe(1 / 3600)  # one second, nobody answers
    assert (approved, approver) == (False, "timeout")


async def test_secret_may_come_from_a_prefect_secret_block(prefect_server) -> None:  # type: ignore[no-untyped-def]
    """A setting of the form prefect-block:NAME is read from that Prefect Secret block at the moment of use."""
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    from tenure.settings import IdPSettings, reveal

    name = f"tenure-idp-token-{uuid.uuid4().hex[:8]}"
    await Secret(value="block-held-token-123").save(name)
    settings = IdPSettings(token=SecretStr(f"prefect-block:{name}"))
    assert "block-held-token-123" not in repr(settings)
    value = await asyncio.to_thread(reveal, settings.token)
    assert value == "block-held-token-123"
