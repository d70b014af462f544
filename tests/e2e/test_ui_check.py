"""scripts/ui_check.py against a real Prefect server with its UI: headless Chromium must show our flow runs and
artifacts, and must report a run the server does not have as missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow, task

from tests.support.prefect_server import PrefectServerHandle, start_prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "ui-check-runs.png"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServerHandle]:
    """A Prefect server with the UI enabled (SQLite), stopped by PID afterwards."""
    server = start_prefect_server(tmp_path_factory.mktemp("prefect-ui"), ui=True)
    try:
        yield server
    finally:
        server.stop()


@flow(name="joiner")
async def joiner_stand_in(employee_id: str) -> None:
    """Never executed: only its name is used to create runs."""


@flow(name="leaver")
async def leaver_stand_in(employee_id: str) -> None:
    """Never executed: only its name is used to create runs."""


@task(name="apply-action")
async def step_stand_in() -> None:
    """Never executed: only its name is used to create task runs."""


@pytest.fixture(scope="module")
async def seeded(ui_server: PrefectServerHandle) -> dict[str, str]:
    """A completed joiner run and a failed leaver run (named like ours), and a keyed markdown artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Failed

    tag = uuid.uuid4().hex[:6].upper()
    seeded = {"joiner": f"joiner-E{tag}", "leaver": f"leaver-E{tag}", "artifact": f"lifecycle-e{tag.lower()}"}
    with temporary_settings(updates={PREFECT_API_URL: ui_server.api_url}):
        async with get_client() as client:
            joined = await client.create_flow_run(
                joiner_stand_in,
                name=seeded["joiner"],
                parameters={"employee_id": f"E{tag}"},
                state=Completed(),
            )
            left = await client.create_flow_run(
                leaver_stand_in,
                name=seeded["leaver"],
                parameters={"employee_id": f"E{tag}"},
                state=Failed(message="a step failed"),
            )
            step = await client.create_task_run(
                step_stand_in,
                flow_run_id=left.id,
                dynamic_key="0",
                name=f"open_ticket-E{tag}-equipment-return",
                state=Failed(message="StepFailed: [rt] RT queue 'Facilities' does not exist"),
            )
            seeded["failed_task"], seeded["failed_task_id"] = step.name, str(step.id)
            done = await client.create_task_run(
                step_stand_in,
                flow_run_id=left.id,
                dynamic_key="1",
                name=f"disable_account-E{tag}",
                state=Completed(),
            )
            seeded["completed_task_id"] = str(done.id)
            await client.create_artifact(
                ArtifactCreate(
                    key=seeded["artifact"],
                    type="markdown",
                    data="# joiner\n| action | outcome |",
                    flow_run_id=joined.id,
                    description="what changed",
                )
            )
    return seeded


def _ui_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ui_check.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_chromium_is_installed() -> None:
    """The UI check needs the Chromium that scripts/install-peers.sh installs."""
    assert shutil.which("chromium") or Path("/usr/bin/chromium").exists()


async def test_ui_shows_runs_and_artifacts(ui_server: PrefectServerHandle, seeded: dict[str, str]) -> None:
    """With no explicit expectations, the newest runs and artifact keys (read from the API) are all shown in
    the rendered UI, and a screenshot of the runs page is written."""
    SCREENSHOT.unlink(missing_ok=True)
    ui_url = ui_server.api_url.removesuffix("/api")
    result = _ui_check("--url", ui_url, "--screenshot", str(SCREENSHOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert seeded["joiner"] in result.stdout and seeded["leaver"] in result.stdout
    assert "1/1 artifacts" in result.stdout
    assert f"task run page shows {seeded['failed_task']} as Failed" in result.stdout
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 10_000
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_ui_check_reports_a_run_that_is_not_shown(
    ui_server: PrefectServerHandle, seeded: dict[str, str]
) -> None:
    """A flow run name the server never had is reported missing (exit 1); a real one passes alongside."""
    ui_url = ui_server.api_url.removesuffix("/api")
    result = _ui_check(
        "--url",
        ui_url,
        "--expect",
        seeded["joiner"],
        "--expect",
        "joiner-NOBODY-42",
        "--screenshot",
        str(ROOT / "test-artifacts" / "ui-check-missing.png"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "joiner-NOBODY-42" in result.stderr
    assert f"shows 1/2 expected flow runs: {seeded['joiner']}" in result.stdout


async def test_ui_check_reports_a_step_that_is_not_failed(
    ui_server: PrefectServerHandle, seeded: dict[str, str]
) -> None:
    """Naming a task run that did not fail is reported (exit 1); the seeded failed step passes."""
    ui_url = ui_server.api_url.removesuffix("/api")
    good = _ui_check("--url", ui_url, "--expect", seeded["leaver"], "--failed-task", seeded["failed_task_id"])
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _ui_check(
        "--url", ui_url, "--expect", seeded["leaver"], "--failed-task", seeded["completed_task_id"]
    )
    assert bad.returncode == 1 and "not FAILED" in bad.stderr, bad.stdout + bad.stderr
