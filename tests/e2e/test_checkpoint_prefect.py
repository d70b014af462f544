"""Audit anchoring inside a Prefect flow run (issue 16, item 5): the joiner flow ends by signing the audit
chain's end into the checkpoint file and publishing the same line as the ``tenure-audit-checkpoint`` artifact of
its run; ``tenure audit verify`` then reports the chain anchored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from sqlmodel import func, select
from typer.testing import CliRunner

from flows.anchoring import ARTIFACT_KEY
from flows.lifecycle import joiner
from models.audit import AuditEvent
from models.db import session_scope
from tenure.checkpoint import CHECKPOINT_FILE
from tenure.cli import app
from tests.e2e.test_lifecycle_prefect import tenure_env  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.slow


async def test_a_flow_run_ends_with_a_signed_checkpoint_and_artifact(
    tenure_env: str,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = tmp_path / "checkpoints"
    monkeypatch.setenv("TENURE_AUDIT__CHECKPOINT_KEY", "e2e-checkpoint-key-7Hq2Wm9Pz4")
    monkeypatch.setenv("TENURE_AUDIT__CHECKPOINT_DIR", str(directory))
    state = await joiner("E7", return_state=True)
    assert state.is_completed(), state.message
    with session_scope(tenure_env) as session:
        events = session.exec(select(func.count()).select_from(AuditEvent)).one()
    [line] = (directory / CHECKPOINT_FILE).read_text().splitlines()
    assert json.loads(line)["seq"] == events > 0
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    assert artifacts and line in str(artifacts[0].data)
    verified = CliRunner().invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "anchored" in verified.output, verified.output
