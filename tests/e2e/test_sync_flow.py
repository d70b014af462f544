"""The ``sync`` flow on a real Prefect server with a real scim2-server and a CSV HRIS: named runs, one task run
per batch (not per employee), progress and summary artifacts without personal data, Failed on the brake."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)

from flows.sync import sync
from lifecycle.policy import Policy
from tests.support.hris_data import fake_people, write_csv
from tests.support.prefect_server import PrefectServerHandle
from tests.support.scim_server import SCIMServer, create_group

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
POLICY = Policy.model_validate(
    {
        "birthright": [{"groups": ["all-staff"]}, {"match": {"department": "Sales"}, "groups": ["sales"]}],
        "brake": {"max_disable_count": 5, "max_disable_percent": 30},
    }
)


def _rows(count: int) -> list[dict[str, str]]:
    rows = fake_people(count, seed=5, today=TODAY)
    for row in rows:
        row.update(status="active", termination_date="", hire_date=(TODAY - timedelta(days=30)).isoformat())
    return rows


async def _artifacts(flow_run_id: Any) -> list[Any]:
    async with get_client() as client:
        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


async def _task_run_names(flow_run_id: Any) -> list[str]:
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(r.name for r in runs)


async def _flow_run_name(flow_run_id: Any) -> str:
    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).name


async def test_sync_flow_batches_artifacts_and_brake(
    prefect_server: PrefectServerHandle,
    scim_server: SCIMServer,
    tmp_path: Path,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full sync of 30 employees runs as a few batch tasks with a summary table; a mass termination ends Failed."""
    base_url = scim_server.tenant_url()
    for group in ("all-staff", "sales"):
        await create_group(base_url, scim_server.token, group)
    rows = _rows(30)
    csv_path = write_csv(tmp_path / "hris.csv", rows)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump(mode="json")), encoding="utf-8")
    for key, value in {
        "TENURE_DATABASE_URL": fresh_sqlite_url,
        "TENURE_POLICY_FILE": str(policy_file),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": base_url,
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(csv_path),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)
    state = await sync(full=True, batch_size=20, return_state=True)
    run_id = state.state_details.flow_run_id
    assert state.is_completed(), state.message
    assert await _flow_run_name(run_id) == "sync-full"
    artifacts = await _artifacts(run_id)
    assert {a.type for a in artifacts} == {"progress", "table"}
    assert next(a for a in artifacts if a.type == "progress").data == 100.0
    table = next(a for a in artifacts if a.type == "table")
    cells = json.loads(table.data) if isinstance(table.data, str) else table.data
    values = {row["metric"]: row["value"] for row in cells}
    assert values["employees seen"] == "30" and values["changed"] == "30" and values["failed"] == "0"
    batches = int(values["batches"])  # manager waves may split batches further, but never one per employee
    assert 2 <= batches < 30
    assert await _task_run_names(run_id) == sorted(f"apply-batch-{n}" for n in range(batches))
    text = json.dumps(cells) + (table.description or "")
    assert not any(row["last_name"] in text or row["work_email"] in text for row in rows)

    for row in rows[:10]:
        row.update(status="terminated", termination_date=(TODAY - timedelta(days=1)).isoformat())
    write_csv(csv_path, rows)
    braked = await sync(return_state=True)
    assert braked.is_failed() and "mass-change brake refused" in (braked.message or "")
    braked_id = braked.state_details.flow_run_id
    assert await _flow_run_name(braked_id) == "sync-incremental"
    assert await _task_run_names(braked_id) == []


async def test_a_batch_with_a_failed_step_is_a_failed_task_run(
    prefect_server: PrefectServerHandle,
    scim_server: SCIMServer,
    tmp_path: Path,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The IdP refuses the sales memberships: each batch holding one ends as a Failed task run naming the step
    and the connector's message (red in the UI), the other batches stay Completed, the run ends Failed."""
    from connectors.errors import ConnectorError, PermanentAPIError
    from connectors.idp.scim import SCIMIdentityProvider

    base_url = scim_server.tenant_url()
    for group in ("all-staff", "sales"):
        await create_group(base_url, scim_server.token, group)
    rows = _rows(12)
    for index, row in enumerate(rows):
        row["department"] = "Sales" if index == 0 else "Engineering"
    csv_path = write_csv(tmp_path / "hris.csv", rows)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump(mode="json")), encoding="utf-8")
    for key, value in {
        "TENURE_DATABASE_URL": fresh_sqlite_url,
        "TENURE_POLICY_FILE": str(policy_file),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": base_url,
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(csv_path),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)
    real_add = SCIMIdentityProvider.add_members
    sales: set[str] = set()

    async def refusing_add(
        self: SCIMIdentityProvider, group_id: str, account_ids: Sequence[str]
    ) -> dict[str, ConnectorError]:
        """The group-wise membership write the sync uses (one PATCH per group): sales refuses every member."""
        if not sales:
            sales.update(g.id for g in await self.list_groups() if g.name == "sales")
        if group_id in sales:
            refused = PermanentAPIError("members of sales are managed elsewhere", source="scim")
            return dict.fromkeys(account_ids, refused)
        return await real_add(self, group_id, account_ids)

    monkeypatch.setattr(SCIMIdentityProvider, "add_members", refusing_add)
    state = await sync(full=True, batch_size=4, return_state=True)
    assert state.is_failed(), state.message
    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    failed = [r for r in runs if r.state is not None and r.state.is_failed()]
    completed = [r for r in runs if r.state is not None and r.state.is_completed()]
    assert len(failed) == 1 and len(completed) == len(runs) - 1 >= 2
    message = failed[0].state.message or ""  # type: ignore[union-attr]
    assert f"add_membership-{rows[0]['employee_id']}-sales: " in message
    assert "members of sales are managed elsewhere" in message
    # one log line per applied, failed or skipped step, ids only
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    steps = [log.message for log in logs if log.message.startswith(("applied ", "failed ", "skipped "))]
    assert (
        f"failed add_membership-{rows[0]['employee_id']}-sales: [scim] members of sales are managed elsewhere"
        in steps
    )
    assert sum(
        1 for line in steps if line.startswith(("applied create_account-", "applied adopt-"))
    ) == 2 * len(rows)
    assert not any(row["last_name"] in line for row in rows for line in steps)
