"""The sync engine against the stateful Graph fake (:mod:`tests.support.graph_fake`) and a CSV HRIS: the first
sync reads the directory in full pages and keeps a copy with the delta links; the next nights read only the
delta (issue "Reach the directories companies run": Done means), repair drift made in the directory, and fall
back to a full read when the link expires."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import respx

from connectors.errors import PermanentAPIError
from connectors.hris.csv_export import CSVExportHRIS
from connectors.idp.entra import EntraIdentityProvider
from engine.auditor import Auditor
from engine.sync import SyncEngine, SyncOptions, SyncReport
from lifecycle.policy import Policy
from models.db import session_scope
from models.directory import mirror_get
from tests.contract.test_idp_entra import make_entra
from tests.support.graph_fake import FakeGraph
from tests.support.graph_seed import seed_in_line
from tests.support.hris_data import DEPARTMENTS, staff_in_three_departments, write_csv

pytestmark = pytest.mark.slow

N = 1_100  # two pages of users at $top=999
MOVERS = N // 100  # 1% drift
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
        # the seeded directory stands for accounts Tenure made before: no adoption of "existing staff" here
        "adopt_before": "2000-01-01",
    }
)


def people() -> list[dict[str, str]]:
    return staff_in_three_departments(N, seed=13, today=TODAY)


@dataclass
class Tenant:
    graph: FakeGraph
    idp: EntraIdentityProvider
    csv_path: Path
    rows: list[dict[str, str]]
    database_url: str
    group_ids: dict[str, str]
    user_ids: dict[str, str]  # employee id -> Graph user id

    def write(self) -> None:
        before = self.csv_path.stat().st_mtime if self.csv_path.exists() else 0.0
        write_csv(self.csv_path, self.rows)
        stamp = max(before + 5, self.csv_path.stat().st_mtime)
        os.utime(self.csv_path, (stamp, stamp))

    async def sync(self, **options: Any) -> tuple[SyncReport, list[tuple[str, str]]]:
        """One sync run and the HTTP requests it sent to Graph (method, path)."""
        mark = len(self.graph.http_calls)
        async with SyncEngine(
            hris=CSVExportHRIS(self.csv_path),
            idp=self.idp,
            ticketing=None,
            policy=POLICY,
            auditor=Auditor(self.database_url, actor="test"),
            options=SyncOptions(**options),
        ) as engine:
            report = await engine.run()
        return report, [c for c in self.graph.http_calls[mark:] if c[1] != "token"]


def reads(calls: list[tuple[str, str]], path: str) -> int:
    """GETs of exactly this path (pages of a collection, not the look-ups of one object)."""
    return sum(1 for m, p in calls if m == "GET" and p == path)


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="graph.microsoft.com").mock(side_effect=fake.handle)
        router.route(host="login.microsoftonline.com").mock(side_effect=fake.handle)
        yield fake


@pytest.fixture
async def tenant(graph: FakeGraph, tmp_path: Path, database_url: str) -> AsyncIterator[Tenant]:
    idp = make_entra()
    t = Tenant(graph, idp, tmp_path / "hris.csv", people(), database_url, {}, {})
    t.write()
    t.group_ids, t.user_ids = await seed_in_line(graph, idp, t.csv_path, POLICY, GROUPS)
    try:
        yield t
    finally:
        await idp.aclose()


def move(row: dict[str, str]) -> None:
    row.update(department="Sales", title=DEPARTMENTS["Sales"][0])


async def test_full_sync_reads_pages_then_nights_read_only_the_delta(tenant: Tenant) -> None:
    """A full sync of 1,100 with 1% movers reads ⌈1100/999⌉ user pages, the groups with their members in one
    round of the group delta, and one delta link; the next night reads the delta only and repairs drift made
    by hand in the directory."""
    movers = [r for r in tenant.rows if r["department"] == "Engineering"][:MOVERS]
    for row in movers:
        move(row)
    tenant.write()

    report, calls = await tenant.sync(full=True)
    assert report.ok and report.directory_read == "full"
    assert report.employees_seen == N and report.planned == MOVERS
    assert reads(calls, "users/delta") == 1  # the link for "from now on", taken before the read
    assert reads(calls, "users") == math.ceil(N / 999)
    assert reads(calls, "groups/delta") == 1  # the groups with their members, in one round
    assert not [p for m, p in calls if m == "GET" and p.startswith("groups") and p != "groups/delta"]
    assert report.changes == 3 * MOVERS  # title+department, -engineering, +sales
    # the writes: 20 to a $batch, account changes first, then memberships (one level after the other)
    batches = math.ceil(MOVERS / 20) + math.ceil(2 * MOVERS / 20)
    writes = [(m, p) for m, p in calls if m != "GET"]
    assert set(writes) == {("POST", "$batch")} and len(writes) == batches
    assert len(calls) == math.ceil(N / 999) + 1 + 1 + batches  # user pages, group round, delta link, writes
    with session_scope(tenant.database_url) as session:
        mirror = mirror_get(session=session, name=copy_name(tenant))
    assert mirror is not None and len(mirror.accounts) == N and len(mirror.groups) == len(GROUPS)

    # drift by hand in the directory: one account loses all-staff, another's title is edited
    lost, edited = tenant.rows[1], tenant.rows[2]
    tenant.graph.members[tenant.group_ids["all-staff"]].remove(tenant.user_ids[lost["employee_id"]])
    tenant.graph.users[tenant.user_ids[edited["employee_id"]]]["jobTitle"] = "Chief Everything"
    tenant.graph._changed("users", tenant.user_ids[edited["employee_id"]], {"jobTitle"})
    tenant.graph._changed(
        "groups", tenant.group_ids["all-staff"], ("member", tenant.user_ids[lost["employee_id"]])
    )

    night, calls = await tenant.sync()
    assert night.ok and night.directory_read == "delta"
    assert reads(calls, "users") == 0 and reads(calls, "groups") == 0  # no full page read
    assert reads(calls, "users/delta") == 1 and reads(calls, "groups/delta") == 1
    lookups = sum(1 for m, p in calls if m == "POST" and p == "$batch")
    assert lookups <= math.ceil((MOVERS + 1) / 20) + 1  # the movers' writes and the hand edit
    assert night.drifted >= 2 and night.changes == 2  # all-staff back, the title back
    user = tenant.graph.users[tenant.user_ids[edited["employee_id"]]]
    assert user["jobTitle"] == edited["title"]
    assert tenant.user_ids[lost["employee_id"]] in tenant.graph.members[tenant.group_ids["all-staff"]]

    settled, _ = await tenant.sync()  # the repairs come back in the delta, and need nothing
    quiet, calls = await tenant.sync()
    assert settled.ok and settled.changes == 0 and quiet.ok and quiet.changes == 0
    assert [p for m, p in calls if m == "GET"] == ["users/delta", "groups/delta"]
    assert not [c for c in calls if c[0] != "GET"]


async def test_an_expired_delta_link_means_a_full_read(tenant: Tenant) -> None:
    await tenant.sync(full=True)
    tenant.graph.reset_delta()
    report, calls = await tenant.sync()
    assert report.ok and report.directory_read == "full (delta link expired)"
    assert reads(calls, "users") == math.ceil(N / 999)
    after, calls = await tenant.sync()
    assert after.ok and after.directory_read == "delta"


async def test_dry_runs_and_failed_runs_keep_the_links(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dry run stores no copy; a run that could not process a change reads it again the next night."""
    report, _ = await tenant.sync(full=True, dry_run=True)
    assert report.ok
    with session_scope(tenant.database_url) as session:
        assert mirror_get(session=session, name=copy_name(tenant)) is None
    await tenant.sync(full=True)
    with session_scope(tenant.database_url) as session:
        first = mirror_get(session=session, name=copy_name(tenant))
    assert first is not None
    edited = tenant.rows[4]
    tenant.graph.users[tenant.user_ids[edited["employee_id"]]]["jobTitle"] = "Hand-edited"
    tenant.graph._changed("users", tenant.user_ids[edited["employee_id"]], {"jobTitle"})
    real_update = tenant.idp.update_user

    async def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise PermanentAPIError("Graph refused the change", source=tenant.idp.source, status_code=400)

    monkeypatch.setattr(tenant.idp, "update_user", refuse)
    failed, _ = await tenant.sync()
    monkeypatch.setattr(tenant.idp, "update_user", real_update)
    assert not failed.ok and failed.drifted >= 1
    with session_scope(tenant.database_url) as session:
        kept = mirror_get(session=session, name=copy_name(tenant))
    assert kept is not None and kept.users_link == first.users_link
    repaired, _ = await tenant.sync()
    assert repaired.ok and repaired.changes == 1
    assert tenant.graph.users[tenant.user_ids[edited["employee_id"]]]["jobTitle"] == edited["title"]


def copy_name(tenant: Tenant) -> str:
    return f"{tenant.idp.source} 0/1"
