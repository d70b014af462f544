"""The sync engine against a real scim2-server and a CSV HRIS: bulk reads, writes only for diffs, the brake,
dry runs, invalid rows, the incremental cursor and partitions."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlmodel import select

from connectors.errors import ConnectorError, PermanentAPIError
from connectors.hris.csv_export import CSVExportHRIS
from connectors.idp.scim import SCIMIdentityProvider
from engine.auditor import Auditor
from engine.sync import SYNC_CURSOR, SyncEngine, SyncOptions, SyncReport
from lifecycle.policy import Policy
from models.audit import AuditEvent, Outcome, iter_events
from models.db import session_scope
from models.domain import Account
from models.ledger import LedgerEntry, cursor_get
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.support.hris_data import DEPARTMENTS, line_of, staff_in_three_departments, write_csv
from tests.support.scim_server import SCIMServer, create_group

pytestmark = pytest.mark.slow

N = 20
TODAY = datetime.now(UTC).date()
GROUPS = ("all-staff", "engineering", "sales")
POLICY = Policy.model_validate(
    {
        "naming": {"username": "{given}.{last}", "email_domain": "example.com"},
        "birthright": [
            {"groups": ["all-staff"]},
            {"match": {"department": "Engineering"}, "groups": ["engineering"]},
            {"match": {"department": "Sales"}, "groups": ["sales"]},
        ],
        "leaver": {"timing": "at_termination", "remove_groups": True},
        "brake": {"max_disable_count": 10, "max_disable_percent": 30},
    }
)


def people(count: int = N) -> list[dict[str, str]]:
    """Active employees (hired 100 days ago) in Engineering, Sales and Finance, with managers."""
    return staff_in_three_departments(count, seed=11, today=TODAY)


def expected_groups(row: dict[str, str]) -> set[str]:
    return (
        {"all-staff"}
        | ({"engineering"} if row["department"] == "Engineering" else set())
        | ({"sales"} if row["department"] == "Sales" else set())
    )


@dataclass
class World:
    """One isolated SCIM tenant, CSV file and audit database."""

    idp: SCIMIdentityProvider
    csv_path: Path
    rows: list[dict[str, str]]
    database_url: str
    base_url: str
    token: str

    def write(self) -> None:
        """Rewrite the CSV from ``rows`` and push its mtime forward (so the incremental cursor sees it)."""
        before = self.csv_path.stat().st_mtime if self.csv_path.exists() else 0.0
        write_csv(self.csv_path, self.rows)
        stamp = max(before + 5, self.csv_path.stat().st_mtime)
        os.utime(self.csv_path, (stamp, stamp))

    def engine(self, policy: Policy = POLICY, **options: Any) -> SyncEngine:
        return SyncEngine(
            hris=CSVExportHRIS(self.csv_path),
            idp=self.idp,
            ticketing=None,
            policy=policy,
            auditor=Auditor(self.database_url, actor="test"),
            options=SyncOptions(max_concurrency=8, **options),
        )

    async def sync(self, policy: Policy = POLICY, **options: Any) -> SyncReport:
        return await self.engine(policy, **options).run()

    async def accounts(self) -> dict[str, Account]:
        """employee id → account, with groups from the group side (as the sync reads them)."""
        member_of: dict[str, set[str]] = {}
        for group in await self.idp.list_groups():
            for member in group.member_ids:
                member_of.setdefault(member, set()).add(group.name)
        found: dict[str, Account] = {}
        async for page in self.idp.iter_users():
            for account in page:
                found[account.employee_id] = account.model_copy(
                    update={"groups": frozenset(member_of.get(account.id, set()))}
                )
        return found

    def events(self) -> list[AuditEvent]:
        with session_scope(self.database_url) as session:
            return list(iter_events(session=session))


async def make_world(
    server: SCIMServer, tmp_path: Path, database_url: str, groups: tuple[str, ...] = GROUPS
) -> World:
    base_url = server.tenant_url()
    for name in groups:
        await create_group(base_url, server.token, name)
    idp = build_identity_provider(
        IdPSettings(
            base_url=base_url, token=SecretStr(server.token), requests_per_second=1000, max_concurrency=16
        )
    )
    world = World(
        idp=idp,
        csv_path=tmp_path / "hris.csv",
        rows=people(),
        database_url=database_url,
        base_url=base_url,
        token=server.token,
    )
    world.write()
    return world


@pytest.fixture
async def world(scim_server: SCIMServer, tmp_path: Path, fresh_sqlite_url: str) -> AsyncIterator[World]:
    """A fresh tenant with the policy's groups, 20 employees in a CSV, an empty SQLite audit database."""
    w = await make_world(scim_server, tmp_path, fresh_sqlite_url)
    try:
        yield w
    finally:
        await w.idp.aclose()


async def test_first_full_sync_creates_accounts_with_groups_and_managers(world: World) -> None:
    """A first full sync creates every account with its birthright groups and manager: per batch one Bulk
    request for its joiners (scim2-server offers /Bulk) and one write per group touched, not one per change."""
    report = await world.sync(full=True)
    accounts = await world.accounts()
    assert report.ok and report.employees_seen == N
    assert set(accounts) == {r["employee_id"] for r in world.rows}
    for row in world.rows:
        account = accounts[row["employee_id"]]
        assert account.active and account.department == row["department"]
        assert account.groups == expected_groups(row)
        assert account.manager_id == (row["manager_id"] or None)
    memberships = sum(len(expected_groups(r)) for r in world.rows)
    assert report.changes == N + memberships
    groups = {g for r in world.rows for g in expected_groups(r)}
    assert report.idp_writes is not None
    managers = {r["employee_id"]: r["manager_id"] for r in world.rows}

    def depth(employee: str | None) -> int:
        return 0 if not employee else 1 + depth(managers.get(employee))

    waves = max(depth(r["employee_id"]) for r in world.rows)  # one Bulk create per wave, managers first
    assert report.idp_writes <= waves + report.batches * len(groups) < N


async def test_reports_find_managers_created_by_other_batches(world: World) -> None:
    """Batches of three spread managers and their reports over many batches, two applied at once: every manager
    reference is set in the one run (which batch waits for which is pinned in tests/unit/test_sync_pipeline.py)."""
    report = await world.sync(full=True, batch_size=3)
    accounts = await world.accounts()
    assert report.ok and report.batches >= N // 3
    managed = [r for r in world.rows if r["manager_id"]]
    assert managed and all(accounts[r["employee_id"]].manager_id == r["manager_id"] for r in managed)


async def test_second_full_sync_makes_zero_writes(world: World) -> None:
    """Re-running a full sync over an unchanged HRIS writes nothing and plans nothing."""
    await world.sync(full=True)
    audit_rows = len(world.events())
    calls_before = dict(world.idp.api.calls)
    report = await world.sync(full=True)
    assert report.ok and report.employees_seen == N
    assert (report.planned, report.changes, report.idp_writes) == (0, 0, 0)
    sent = {m: n - calls_before.get(m, 0) for m, n in world.idp.api.calls.items()}
    assert {m for m, n in sent.items() if n} == {"GET"}
    assert (
        report.idp_calls == report.pages_read
    )  # one page of users, one list of groups: nothing per employee
    assert len(world.events()) == audit_rows


async def test_changed_department_writes_only_the_diff(world: World) -> None:
    """A mover from Engineering to Sales costs exactly three writes: the attribute, one add, one remove."""
    await world.sync(full=True)
    mover = next(r for r in world.rows if r["department"] == "Engineering")
    mover.update(department="Sales", title=DEPARTMENTS["Sales"][0])
    world.write()
    report = await world.sync(full=True)
    account = (await world.accounts())[mover["employee_id"]]
    assert report.ok and report.planned == 1
    assert report.idp_writes == 3 and report.changes == 3
    assert account.department == "Sales" and account.title == DEPARTMENTS["Sales"][0]
    assert account.groups == {"all-staff", "sales"}
    update = next(e for e in world.events() if e.action == "idp.user.update")
    assert update.employee_id == mover["employee_id"] and update.details["changed"] == ["department", "title"]


async def test_terminated_employee_is_disabled_and_loses_groups(world: World) -> None:
    """A termination in the CSV disables that one account and removes its managed groups; others stay."""
    await world.sync(full=True)
    leaver = world.rows[3]
    leaver.update(status="terminated", termination_date=(TODAY - timedelta(days=1)).isoformat())
    world.write()
    report = await world.sync(full=True)
    accounts = await world.accounts()
    assert report.ok and report.planned == 1
    assert report.idp_writes == 1 + len(expected_groups(leaver))
    assert not accounts[leaver["employee_id"]].active and accounts[leaver["employee_id"]].groups == set()
    assert all(a.active for eid, a in accounts.items() if eid != leaver["employee_id"])


async def test_invalid_row_is_audited_and_the_rest_processed(world: World) -> None:
    """One unparseable row is audited with its line number and reason; every other employee is synced."""
    bad = world.rows[7]
    bad["hire_date"] = "31/12/2023"
    world.write()
    report = await world.sync(full=True)
    accounts = await world.accounts()
    assert report.invalid_records == 1 and report.failed == 0
    assert set(accounts) == {r["employee_id"] for r in world.rows} - {bad["employee_id"]}
    invalid = [e for e in world.events() if e.action == "hris.record.invalid"]
    assert len(invalid) == 1
    assert invalid[0].details == {"row": line_of(7)} and invalid[0].employee_id == bad["employee_id"]
    assert "hire_date" in invalid[0].reason and "31/12/2023" not in invalid[0].reason


async def test_brake_refuses_a_mass_termination_and_applies_nothing(world: World) -> None:
    """Terminating 80% of the company trips the brake: no write, a sync.brake audit row; override applies it."""
    await world.sync(full=True)
    for row in world.rows[: int(N * 0.8)]:
        row.update(status="terminated", termination_date=(TODAY - timedelta(days=2)).isoformat())
    world.write()
    refused = await world.sync(full=True)
    assert refused.refused and not refused.ok
    assert refused.brake is not None and refused.brake.disables == 16 and refused.brake.active_accounts == N
    assert refused.idp_writes == 0 and refused.changes == 0
    assert all(a.active for a in (await world.accounts()).values())
    brake_rows = [e for e in world.events() if e.action == "sync.brake"]
    assert [e.outcome for e in brake_rows] == [Outcome.FAILED]
    assert not [e for e in world.events() if e.action == "idp.user.disable"]

    overridden = await world.sync(full=True, override_brake=True)
    assert overridden.ok and overridden.brake is not None and overridden.brake.overridden
    accounts = await world.accounts()
    assert sum(1 for a in accounts.values() if not a.active) == 16
    assert [e.outcome for e in world.events() if e.action == "sync.brake"] == [
        Outcome.FAILED,
        Outcome.APPLIED,
    ]


async def test_dry_run_writes_planned_audit_rows_and_nothing_else(world: World) -> None:
    """A dry run sends no write, creates no ledger entry and audits every planned action as 'planned'."""
    report = await world.sync(full=True, dry_run=True)
    assert report.ok and report.idp_writes == 0 and report.planned == N
    assert await world.accounts() == {}
    events = world.events()
    assert len(events) == report.planned_actions and {e.outcome for e in events} == {Outcome.PLANNED}
    # staff hired 100 days ago, no ledger yet: adopted (audited as planned too), no joiner tickets
    assert {e.action for e in events} == {"lifecycle.adopt", "idp.user.create", "idp.membership.add"}
    with session_scope(world.database_url) as session:
        assert session.exec(select(LedgerEntry)).all() == []
        assert cursor_get(session=session, name=SYNC_CURSOR) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_incremental_sync_uses_and_moves_the_cursor(
    backend: str, scim_server: SCIMServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Incremental runs read changes since the stored cursor and move it to the HRIS's next cursor."""
    database_url = request.getfixturevalue("fresh_sqlite_url" if backend == "sqlite" else "fresh_pg_url")
    world = await make_world(scim_server, tmp_path, database_url)
    try:
        first = await world.sync()
        mtime = datetime.fromtimestamp(world.csv_path.stat().st_mtime, UTC)
        assert first.ok and first.cursor_before is None and first.cursor_moved and first.cursor_after == mtime
        assert len(await world.accounts()) == N

        idle = await world.sync()
        assert idle.employees_seen == 0 and idle.idp_writes == 0 and idle.cursor_before == mtime

        world.rows[5]["title"] = "Principal Person"
        world.write()
        changed = await world.sync()
        with session_scope(database_url) as session:
            stored = cursor_get(session=session, name=SYNC_CURSOR)
        assert changed.ok and changed.employees_seen == N and changed.changes == 1 and changed.idp_writes == 1
        assert changed.cursor_before == mtime and stored is not None and stored > mtime
        assert (await world.accounts())[world.rows[5]["employee_id"]].title == "Principal Person"
    finally:
        await world.idp.aclose()


class _RefusingSales:
    """The world's IdP, except that it refuses memberships of ``sales`` until ``healed``."""

    def __init__(self, idp: SCIMIdentityProvider) -> None:
        self._idp, self.healed, self._sales = idp, False, ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._idp, name)

    async def list_groups(self) -> Any:
        groups = await self._idp.list_groups()
        self._sales = next(g.id for g in groups if g.name == "sales")
        return groups

    async def add_member(self, group_id: str, account_id: str) -> None:
        if group_id == self._sales and not self.healed:
            raise PermanentAPIError("mutability: sales is read-only", source="scim", status_code=400)
        await self._idp.add_member(group_id, account_id)

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        if group_id == self._sales and not self.healed:
            refused = PermanentAPIError("mutability: sales is read-only", source="scim", status_code=400)
            return dict.fromkeys(account_ids, refused)
        return await self._idp.add_members(group_id, account_ids)


async def test_failed_change_keeps_the_cursor(world: World) -> None:
    """If any change fails (the IdP refuses a membership) the cursor stays; the fixed re-run moves it."""
    refusing = _RefusingSales(world.idp)
    failing = world.engine()
    failing.idp = failing.applier.idp = refusing  # type: ignore[assignment]
    failed = await failing.run()
    assert not failed.ok and failed.failed == sum(1 for r in world.rows if r["department"] == "Sales")
    assert not failed.cursor_moved
    with session_scope(world.database_url) as session:
        assert cursor_get(session=session, name=SYNC_CURSOR) is None
    fixed = await world.sync()
    assert fixed.ok and fixed.cursor_moved and fixed.changes == failed.failed


class PowerCut(BaseException):
    """The process dies here: not an error any code handles (a BaseException, like SystemExit)."""


class _PowerCut:
    """The world's IdP, except that the tenth group-membership write crashes the process (not an API error)."""

    def __init__(self, idp: SCIMIdentityProvider) -> None:
        self._idp, self._adds = idp, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._idp, name)

    async def add_member(self, group_id: str, account_id: str) -> None:
        self._adds += 1
        if self._adds == 10:
            raise PowerCut("power cut")
        await self._idp.add_member(group_id, account_id)

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        if self._adds < 10 <= self._adds + len(account_ids):
            raise PowerCut("power cut")
        self._adds += len(account_ids)
        return await self._idp.add_members(group_id, account_ids)


async def test_crash_mid_run_leaves_the_cursor_so_the_next_run_re_reads(world: World) -> None:
    """A run that dies half-way keeps the cursor; the next run re-reads, finishes the work and creates no twin."""
    crashing = world.engine()
    crashing.idp = crashing.applier.idp = _PowerCut(world.idp)  # type: ignore[assignment]
    with pytest.raises(PowerCut, match="power cut"):
        await crashing.run()
    with session_scope(world.database_url) as session:
        assert cursor_get(session=session, name=SYNC_CURSOR) is None
    resumed = await world.sync()
    accounts = await world.accounts()
    assert resumed.ok and resumed.cursor_before is None and resumed.cursor_moved
    assert resumed.employees_seen == N and len(accounts) == N
    assert all(accounts[r["employee_id"]].groups == expected_groups(r) for r in world.rows)
    assert (await world.sync(full=True)).idp_writes == 0


async def test_partitions_split_the_employees_disjointly(world: World) -> None:
    """Two partitions together create every account exactly once; neither touches the other's employees."""
    first = await world.sync(full=True, partition=0, partitions=2)
    second = await world.sync(full=True, partition=1, partitions=2)
    assert first.ok and second.ok
    assert first.employees_seen + second.employees_seen == N and first.employees_seen > 0
    assert len(await world.accounts()) == N
    creates = [e.employee_id for e in world.events() if e.action == "idp.user.create"]
    assert sorted(creates) == sorted(r["employee_id"] for r in world.rows)
    # a manager created by the other partition after their report is linked by the next run, and only that
    seq = max(e.seq for e in world.events())
    follow_up = await world.sync(full=True)
    later = [e for e in world.events() if e.seq > seq]
    assert follow_up.ok and follow_up.idp_writes == len(later)
    assert all(e.action == "idp.user.update" and e.details["changed"] == ["manager_id"] for e in later)
    assert (await world.sync(full=True)).idp_writes == 0


def test_partition_assignment_is_stable_and_complete() -> None:
    """Every employee id falls in exactly one partition, the same one every time."""
    from engine.sync import partition_of

    ids = [f"E{i:05d}" for i in range(1000)]
    shares = [partition_of(i, 4) for i in ids]
    assert shares == [partition_of(i, 4) for i in ids]
    assert set(shares) == {0, 1, 2, 3} and all(150 < shares.count(p) < 350 for p in range(4))
    assert {partition_of(i, 1) for i in ids} == {0}


def _cli_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the ``tenure`` command at the world's tenant, CSV, database and a policy file."""
    import yaml

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY.model_dump(mode="json")), encoding="utf-8")
    for key, value in {
        "TENURE_DATABASE_URL": world.database_url,
        "TENURE_POLICY_FILE": str(policy_file),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": world.base_url,
        "TENURE_IDP__TOKEN": world.token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(world.csv_path),
        "TENURE_TICKETING__KIND": "none",
    }.items():
        monkeypatch.setenv(key, value)


async def test_cli_sync_applies_dry_runs_and_exits_1_on_the_brake(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tenure sync` runs the engine locally: exit 0 when applied, 0 for a dry run, 1 when the brake refuses."""
    import asyncio

    from typer.testing import CliRunner

    from tenure.cli import app

    _cli_env(world, tmp_path, monkeypatch)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, ["sync", *args], catch_exceptions=False)

    dry = await asyncio.to_thread(invoke, "--full", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert await world.accounts() == {}
    applied = await asyncio.to_thread(invoke, "--full")
    assert applied.exit_code == 0, applied.output
    assert "employees seen" in applied.output and len(await world.accounts()) == N
    for row in world.rows[:12]:
        row.update(status="terminated", termination_date=(TODAY - timedelta(days=2)).isoformat())
    world.write()
    braked = await asyncio.to_thread(invoke)
    assert braked.exit_code == 1 and "mass-change brake refused" in braked.output
    assert all(a.active for a in (await world.accounts()).values())
    overridden = await asyncio.to_thread(invoke, "--override-brake")
    assert overridden.exit_code == 0, overridden.output
    assert sum(1 for a in (await world.accounts()).values() if not a.active) == 12


def test_cli_sync_config_error_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing policy file is a configuration error: exit 2, nothing read or written."""
    from typer.testing import CliRunner

    from tenure.cli import app

    monkeypatch.setenv("TENURE_POLICY_FILE", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("TENURE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = CliRunner().invoke(app, ["sync"])
    assert result.exit_code == 2 and "not found" in result.output
    assert not (tmp_path / "db.sqlite").exists()


async def test_truncated_export_is_refused_before_planning(world: World) -> None:
    """A full sync whose export lost more rows than the brake's share since the last full sync plans nothing and
    is refused (audited); with the override it goes on and the new count is remembered."""
    assert (await world.sync(full=True)).ok
    world.rows = world.rows[:12]  # 40% of the roster missing; the policy's brake allows 30%
    world.write()
    refused = await world.sync(full=True)
    assert refused.refused and not refused.ok and refused.planned == 0 and refused.changes == 0
    assert "shrank" in refused.summary() or "fewer" in refused.summary()
    assert [e.outcome for e in world.events() if e.action == "sync.roster"] == [Outcome.FAILED.value]
    overridden = await world.sync(full=True, override_brake=True)
    assert overridden.ok and not overridden.refused
    assert (await world.sync(full=True)).ok  # 12 is now the count to compare with
