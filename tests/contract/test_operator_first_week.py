"""The operator's first week (issue #18), through the `tenure` command against a real scim2-server and a CSV
HRIS: adopting the staff a company already has, `config check --online`, no silent empty results, and dry
runs and the brake that name employees by id (once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from connectors.hris.csv_export import CSVExportHRIS
from lifecycle.policy import Policy
from tenure.cli import app
from tests.contract.test_sync_scim import POLICY, TODAY, World, make_world
from tests.support.scim_server import SCIMServer

pytestmark = pytest.mark.slow

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
runner = CliRunner()


@pytest.fixture
async def world(scim_server: SCIMServer, tmp_path: Path, fresh_sqlite_url: str) -> AsyncIterator[World]:
    """20 employees hired 100 days ago in a CSV, a fresh SCIM tenant with the policy's groups, no ledger."""
    w = await make_world(scim_server, tmp_path, fresh_sqlite_url)
    try:
        yield w
    finally:
        await w.idp.aclose()


def use(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: Policy = POLICY) -> None:
    """Point the `tenure` command at the world (its tenant, CSV, database) and ``policy``."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json")), encoding="utf-8")
    for key, value in {
        "TENURE_DATABASE_URL": world.database_url,
        "TENURE_POLICY_FILE": str(policy_file),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": world.base_url,
        "TENURE_IDP__TOKEN": world.token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
        "TENURE_IDP__MAX_ATTEMPTS": "1",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(world.csv_path),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)


async def tenure(*args: str) -> Any:
    return await asyncio.to_thread(runner.invoke, app, list(args), catch_exceptions=False)


def with_tickets(policy: Policy) -> Policy:
    return policy.model_copy(
        update={
            "tickets": Policy.model_validate(
                {"tickets": {"joiner": [{"purpose": "laptop", "title": "Laptop for {employee_id}"}]}}
            ).tickets
        }
    )


# -- (1) adoption ----------------------------------------------------------------------------------------------


async def test_first_full_sync_adopts_existing_staff_and_a_later_hire_is_a_joiner(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staff hired before the adoption date (default: the first run's date) are shown as `adopt` in the dry
    run, then linked without joiner tickets and audited; someone hired on the first run's day still gets the
    joiner ticket."""
    policy = with_tickets(POLICY)
    use(world, tmp_path, monkeypatch, policy)
    newcomer = dict(world.rows[0], employee_id="E99001", hire_date=TODAY.isoformat(), manager_id="")
    newcomer.update(first_name="Nova", last_name="Newcomer", work_email="nova@example.com")
    world.rows.append(newcomer)
    world.write()

    dry = await tenure("sync", "--full", "--dry-run")
    assert dry.exit_code == 0, dry.output
    adopt_lines = [line for line in dry.output.splitlines() if line.strip().startswith("adopt ")]
    assert len(adopt_lines) == 20 and all("open_ticket" not in line for line in adopt_lines)
    assert any(
        line.strip().startswith("joiner E99001: ") and "open_ticket" in line
        for line in dry.output.splitlines()
    )

    applied = await tenure("sync", "--full")
    assert applied.exit_code == 0, applied.output
    events = world.events()
    adopted = {e.employee_id for e in events if e.action == "lifecycle.adopt" and e.outcome == "applied"}
    assert adopted == {row["employee_id"] for row in world.rows} - {"E99001"}
    ticketed = {e.employee_id for e in events if e.action == "ticket.create"}
    assert ticketed == {"E99001"}  # skipped (no ticketing system here), but planned for the new hire only
    assert len(await world.accounts()) == 21

    again = await tenure("sync", "--full", "--dry-run")  # adopted once: no adoption (nor ticket) again
    assert again.exit_code == 0 and " adopt " not in again.output and "open_ticket" not in again.output


async def test_adopt_before_setting_overrides_the_first_run_date(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TENURE_ADOPT_BEFORE earlier than everyone's hire date: nobody is adopted, all are joiners."""
    use(world, tmp_path, monkeypatch, with_tickets(POLICY))
    monkeypatch.setenv("TENURE_ADOPT_BEFORE", (TODAY - timedelta(days=1000)).isoformat())
    dry = await tenure("sync", "--full", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert " adopt " not in dry.output and dry.output.count("joiner E") == 20


async def test_the_demo_people_are_adopted_and_only_the_days_hire_gets_joiner_tickets(
    scim_server: SCIMServer, tmp_path: Path, fresh_sqlite_url: str
) -> None:
    """The demo's own roster (sandbox.demo.make_people) and examples/policy.yaml: the first full sync opens no
    joiner ticket for the staff hired before the adoption date; a hire of the day still gets laptop and badge."""
    from engine.auditor import Auditor
    from engine.sync import SyncEngine, SyncOptions
    from lifecycle.policy import load_policy
    from sandbox.demo import make_people
    from tests.contract.test_one_door import Tickets

    policy = load_policy(EXAMPLE_POLICY)
    world = await make_world(
        scim_server, tmp_path, fresh_sqlite_url, groups=tuple(sorted(policy.managed_groups))
    )
    tickets = Tickets()
    world.rows = make_people()
    world.write()

    async def full_sync() -> None:
        engine = SyncEngine(
            hris=CSVExportHRIS(world.csv_path),
            idp=world.idp,
            ticketing=tickets,
            policy=policy,
            auditor=Auditor(world.database_url, actor="demo"),
            options=SyncOptions(full=True),
        )
        assert (await engine.run()).ok

    try:
        await full_sync()
        assert len(await world.accounts()) == len(world.rows) and tickets.creates == {}
        hire = dict(world.rows[0], employee_id="E90024", first_name="Grace", last_name="Hopper")
        hire.update(hire_date=TODAY.isoformat(), work_email="grace.hopper@example.com", status="active")
        world.rows.append(hire)
        world.write()
        await full_sync()
    finally:
        await world.idp.aclose()
    assert sorted(tickets.creates) == [f"tenure:E90024:badge:{TODAY}", f"tenure:E90024:laptop:{TODAY}"]


# -- (2) config check --online ---------------------------------------------------------------------------------


async def test_config_check_online_reads_each_system_and_names_what_fails(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config check --online`: one read per system; a wrong IdP token or a missing export is named, exit 2;
    the offline check still says nothing was contacted."""
    use(world, tmp_path, monkeypatch)
    good = await tenure("config", "check", "--online")
    assert good.exit_code == 0, good.output
    assert "ok     HRIS (csv)" in good.output and "ok     IdP (scim)" in good.output

    monkeypatch.setenv("TENURE_IDP__TOKEN", "wrong")
    offline = await tenure("config", "check")
    assert offline.exit_code == 0 and "offline" in offline.output
    wrong = await tenure("config", "check", "--online")
    assert wrong.exit_code == 2, wrong.output
    assert "FAILED IdP (scim): AuthenticationError" in wrong.output and "ok     HRIS (csv)" in wrong.output
    assert "configuration OK" not in wrong.output

    monkeypatch.setenv("TENURE_IDP__TOKEN", world.token)
    monkeypatch.setenv("TENURE_HRIS__PATH", str(tmp_path / "nope.csv"))
    missing = await tenure("config", "check", "--online")
    assert (
        missing.exit_code == 2
        and "FAILED HRIS (csv)" in missing.output
        and "does not exist" in missing.output
    )


async def test_config_check_online_names_a_policy_group_the_idp_lacks(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IdP read includes the policy's groups: one missing is named."""
    policy = POLICY.model_copy(
        update={
            "birthright": [
                *POLICY.birthright,
                *Policy.model_validate({"birthright": [{"groups": ["vpn"]}]}).birthright,
            ]
        }
    )
    use(world, tmp_path, monkeypatch, policy)
    result = await tenure("config", "check", "--online")
    assert (
        result.exit_code == 2
        and "FAILED IdP (scim): MissingGroups" in result.output
        and "vpn" in result.output
    )


# -- (4) no silent empty results -------------------------------------------------------------------------------


def test_read_only_commands_refuse_a_database_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit verify`, `audit export` and `kpi` on a database file that does not exist: exit 2, no file made."""
    missing = tmp_path / "nonexistent.db"
    monkeypatch.setenv("TENURE_DATABASE_URL", f"sqlite:///{missing}")
    monkeypatch.setenv("TENURE_POLICY_FILE", str(EXAMPLE_POLICY))
    for args in (["audit", "verify"], ["audit", "export"], ["kpi"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "does not exist" in result.output and "audit chain OK" not in result.output
    assert not missing.exists()


async def test_a_missing_hris_export_is_an_error_for_plan_and_sync(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan E…` with the export gone says so (exit 1), instead of "no HR record … (orphan)"."""
    use(world, tmp_path, monkeypatch)
    assert (await tenure("sync", "--full")).exit_code == 0
    monkeypatch.setenv("TENURE_HRIS__PATH", str(tmp_path / "nope.csv"))
    employee_id = world.rows[2]["employee_id"]
    for args in (("plan", employee_id), ("apply", employee_id), ("sync",), ("kpi",)):
        result = await tenure(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "nope.csv does not exist" in result.output and "orphan" not in result.output


# -- (5) ids, once ---------------------------------------------------------------------------------------------


async def test_the_brake_names_the_employees_once_and_nothing_says_applying(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused sync names the leavers by id (not by name), once; the progress never shows "applying"; the
    dry run lists the same ids."""
    use(world, tmp_path, monkeypatch)
    assert (await tenure("sync", "--full")).exit_code == 0
    leavers = world.rows[:12]
    for row in leavers:
        row.update(status="terminated", termination_date=(TODAY - timedelta(days=2)).isoformat())
    world.write()
    dry = await tenure("sync", "--dry-run")
    assert dry.exit_code == 1, dry.output
    for row in leavers:
        assert f"leaver {row['employee_id']}: disable_account" in dry.output
    braked = await tenure("sync")
    assert braked.exit_code == 1, braked.output
    ids = ", ".join(row["employee_id"] for row in sorted(leavers, key=lambda r: r["employee_id"]))
    assert braked.output.count("mass-change brake refused") == 1
    assert braked.output.count(leavers[0]["employee_id"]) == 1 and ids in braked.output
    assert "applying" not in braked.output
    assert not any(row["last_name"] in braked.output for row in leavers)


async def test_example_policy_lets_one_leaver_of_eleven_through(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With examples/policy.yaml (5% and more than 10 people, or more than 25), one leaver in an 11-person
    company is applied, and the summary names who changed."""
    from lifecycle.policy import load_policy

    example = load_policy(EXAMPLE_POLICY)
    small = POLICY.model_copy(update={"brake": example.brake})
    world.rows = world.rows[:11]
    world.write()
    use(world, tmp_path, monkeypatch, small)
    assert (await tenure("sync", "--full")).exit_code == 0
    leaver = world.rows[4]
    leaver.update(status="terminated", termination_date=(TODAY - timedelta(days=2)).isoformat())
    world.write()
    result = await tenure("sync")
    assert result.exit_code == 0, result.output
    assert f"changed: {leaver['employee_id']}" in result.output
    assert not (await world.accounts())[leaver["employee_id"]].active
