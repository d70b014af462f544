"""Two provisioning targets end to end, through the ``tenure`` CLI, on real peers: the directory is one
scim2-server, the second target ``github`` another scim2-server, tickets go to Request Tracker 5, the HRIS is a
CSV export.

Before Tenure's first run ``github`` already holds 50 accounts of engineers (same userName and e-mail, no
employee id), 2 accounts whose userName two people share, and 3 accounts of nobody. The first sync adopts the
50 (``link``, no duplicate), leaves the 2 disputed accounts untouched and names them (exit 1), counts the 3
orphans; an engineer joiner gets both accounts (the directory first), a sales joiner only the directory's; a
mover out of Engineering loses the github account; a leaver is disabled in both (github first). Every step is
run again and writes nothing in either server.
"""

from __future__ import annotations

import asyncio
import csv
import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select
from typer.testing import CliRunner, Result

from models.audit import AuditEvent
from models.db import session_scope
from tenure.cli.app import app
from tenure.compose import build_ticketing
from tenure.settings import TicketingSettings
from tests.support.hris_data import COLUMNS
from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER, RTServer
from tests.support.scim_server import SCIMServer, create_group, running_scim_server

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
HIRED = (TODAY - timedelta(days=100)).isoformat()
ADOPTED = 50
POLICY = textwrap.dedent(
    """
    naming: {username: "{given}.{last}", email_domain: example.com}
    birthright:
      - groups: [all-staff]
    tickets:
      joiner:
        - purpose: laptop
          title: "Laptop for {employee_id}"
    targets:
      github:
        account_when: {department: Engineering}
        after: directory
        birthright:
          - groups: [developers]
          - match: {title: Staff Engineer}
            groups: [staff-engineers]
    """
)
FIRST = ["Aino", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas"]
LAST = ["Berg", "Costa", "Dahl", "Ekman", "Fischer"]


def _row(eid: str, first: str, last: str, department: str, **extra: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id=eid,
        first_name=first,
        last_name=last,
        work_email=f"{first.lower()}.{last.lower()}@example.com",
        department=department,
        title="Staff Engineer" if eid.endswith("7") else "Engineer" if department == "Engineering" else "AE",
        location="Berlin",
        employment_type="employee",
        status="active",
        hire_date=HIRED,
    )
    row.update(extra)
    return row


def _people() -> list[dict[str, str]]:
    rows = [_row(f"E{i:03d}", FIRST[i % 10], LAST[i // 10], "Engineering") for i in range(ADOPTED)]
    rows.append(_row("E051", "Zoe", "Quist", "Engineering"))  # an engineer joiner
    rows.append(_row("S001", "Sven", "Sale", "Sales"))  # a sales joiner
    # two people whose userName (quinn.zephyr) is the same: an account holding it is disputed
    rows.append(_row("D001", "Quinn", "Zephyr", "Engineering"))
    rows.append(_row("D002", "Quinn", "Zephyr", "Engineering", work_email="q.zephyr@example.com"))
    rows.append(_row("D003", "Robin", "Yarrow", "Engineering"))
    rows.append(_row("D004", "Robin", "Yarrow", "Sales", work_email="r.yarrow@example.com"))
    return rows


class World:
    def __init__(
        self, tmp: Path, directory: str, github: str, token: str, gh_token: str, rt: RTServer, db: str
    ):
        self.hris, self.policy = tmp / "hris.csv", tmp / "policy.yaml"
        self.policy.write_text(POLICY)
        self.rows = _people()
        self.directory, self.github, self.token, self.gh_token = directory, github, token, gh_token
        self.database_url = db
        self.env = {
            "TENURE_DATABASE_URL": db,
            # the roster's people are joiners here (their tickets are checked), not staff to adopt (#18)
            "TENURE_ADOPT_BEFORE": "2000-01-01",
            "TENURE_POLICY_FILE": str(self.policy),
            "TENURE_HRIS__KIND": "csv",
            "TENURE_HRIS__PATH": str(self.hris),
            "TENURE_IDP__KIND": "scim",
            "TENURE_IDP__BASE_URL": directory,
            "TENURE_IDP__TOKEN": token,
            "TENURE_IDP__REQUESTS_PER_SECOND": "1000",
            "TENURE_TARGETS__GITHUB__KIND": "scim",
            "TENURE_TARGETS__GITHUB__BASE_URL": github,
            "TENURE_TARGETS__GITHUB__TOKEN": gh_token,
            "TENURE_TARGETS__GITHUB__REQUESTS_PER_SECOND": "1000",
            "TENURE_TICKETING__KIND": "rt",
            "TENURE_TICKETING__BASE_URL": rt.base_url,
            "TENURE_TICKETING__USERNAME": RT_ROOT_USER,
            "TENURE_TICKETING__PASSWORD": RT_ROOT_PASSWORD,
            "TENURE_TICKETING__QUEUE": "General",
            "COLUMNS": "250",  # rich renders the summary table this wide: no cell is wrapped
        }
        self.rt = rt
        self.write()

    def write(self) -> None:
        with self.hris.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

    def row(self, eid: str) -> dict[str, str]:
        return next(r for r in self.rows if r["employee_id"] == eid)

    def tenure(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(app, list(args), env={**self.env, **env})

    def audit(self, action: str) -> list[AuditEvent]:
        with session_scope(self.database_url) as session:
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)  # type: ignore[arg-type]
            return list(session.exec(query))


def _state(base_url: str, token: str) -> dict[str, Any]:
    """Every user (id → externalId, userName, active, meta) and group (name → member ids), read raw."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        users = client.get("Users", params={"count": 1000}).json().get("Resources", [])
        groups = client.get("Groups", params={"count": 1000}).json().get("Resources", [])
    return {
        "users": {
            u["id"]: (
                u.get("externalId"),
                u["userName"],
                u.get("active", True),
                u.get("meta", {}).get("lastModified"),
            )
            for u in users
        },
        "groups": {g["displayName"]: sorted(m["value"] for m in g.get("members", [])) for g in groups},
    }


def _by_employee(state: dict[str, Any]) -> dict[str, list[tuple[str, bool]]]:
    found: dict[str, list[tuple[str, bool]]] = {}
    for aid, (eid, _, active, _) in state["users"].items():
        found.setdefault(eid or "", []).append((aid, active))
    return found


def _post_user(base_url: str, token: str, body: dict[str, Any]) -> str:
    schema = "urn:ietf:params:scim:schemas:core:2.0:User"
    with httpx.Client(base_url=base_url, timeout=30) as client:
        response = client.post(
            "Users",
            json={"schemas": [schema], **body},
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        )
        response.raise_for_status()
        return str(response.json()["id"])


@pytest.fixture(scope="module")
def github_server() -> Iterator[SCIMServer]:
    """The second target: its own scim2-server process, stopped by PID."""
    with running_scim_server() as server:
        yield server


@pytest.fixture
def world(
    scim_server: SCIMServer, github_server: SCIMServer, rt: RTServer, tmp_path: Path, fresh_sqlite_url: str
) -> World:
    directory, github = scim_server.tenant_url(), github_server.tenant_url()
    for name in ("all-staff",):
        asyncio.run(create_group(directory, scim_server.token, name))
    for name in ("developers", "staff-engineers"):
        asyncio.run(create_group(github, github_server.token, name))
    w = World(tmp_path, directory, github, scim_server.token, github_server.token, rt, fresh_sqlite_url)
    # Tenure has run the directory before: the 50 engineers' directory accounts carry their employee id
    for row in w.rows[:ADOPTED]:
        user_name = f"{row['first_name'].lower()}.{row['last_name'].lower()}"
        _post_user(
            directory, w.token, {"userName": user_name, "externalId": row["employee_id"], "active": True}
        )
        # ... and github has them already, without an employee id (same userName and e-mail)
        email = [{"value": row["work_email"], "primary": True}]
        _post_user(github, w.gh_token, {"userName": user_name, "emails": email, "active": True})
    w.disputed = [  # type: ignore[attr-defined]
        _post_user(github, w.gh_token, {"userName": "quinn.zephyr", "active": True}),
        _post_user(github, w.gh_token, {"userName": "robin.yarrow", "active": True}),
    ]
    w.orphans = [  # type: ignore[attr-defined]
        _post_user(
            github, w.gh_token, {"userName": f"ghost.{n}", "emails": [{"value": f"ghost{n}@elsewhere.org"}]}
        )
        for n in (1, 2, 3)
    ]
    return w


def _unchanged(world: World, before: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """A re-run (exit 1: the disputes stay) writes nothing in either target."""
    result = world.tenure("sync", "--full")
    assert result.exit_code == 1, result.output
    after = (_state(world.directory, world.token), _state(world.github, world.gh_token))
    assert after == before


def test_two_targets_adoption_disputes_orphans_joiner_mover_leaver(world: World) -> None:
    gh0 = _state(world.github, world.gh_token)

    # a dry run shows the adoptions first, naming the target, and changes nothing
    dry = world.tenure("sync", "--full", "--dry-run")
    planned = [line.split() for line in dry.stdout.splitlines() if line.startswith("planned ")]
    links = [p for p in planned if p[3] == "link"]
    assert len(links) == ADOPTED and planned[:ADOPTED] == links
    assert all(p[2] == "github" for p in links)
    assert len({p[1] for p in planned}) <= 50  # the actions of the first 50 employees; the rest are counted
    assert _state(world.github, world.gh_token) == gh0

    # the first run: adopt 50, create for the joiners, leave the disputes untouched, exit 1 naming them
    first = world.tenure("sync", "--full")
    assert first.exit_code == 1, first.output
    for account_id, people in zip(world.disputed, (("D001", "D002"), ("D003", "D004")), strict=True):  # type: ignore[attr-defined]
        assert f"account {account_id}" in first.output and all(p in first.output for p in people)
    directory = _state(world.directory, world.token)
    github = _state(world.github, world.gh_token)
    owners = _by_employee(github)
    assert all(len(owners[r["employee_id"]]) == 1 for r in world.rows[:ADOPTED])  # adopted, no duplicate
    assert {gh0["users"][aid][1] for aid, _ in owners[""]} == {
        "quinn.zephyr",
        "robin.yarrow",
        "ghost.1",
        "ghost.2",
        "ghost.3",
    }
    for aid in [*world.disputed, *world.orphans]:  # type: ignore[attr-defined]
        assert github["users"][aid] == gh0["users"][aid]  # never touched
    assert len(github["users"]) == len(gh0["users"]) + 1  # only the engineer joiner E051 is new
    assert "E051" in owners and "S001" not in owners and "D001" not in owners and "D002" not in owners
    assert "E051" in _by_employee(directory) and "S001" in _by_employee(directory)
    assert len(github["groups"]["developers"]) == ADOPTED + 1
    assert len(github["groups"]["staff-engineers"]) == 5  # E007, E017, E027, E037, E047
    links = world.audit("idp.user.link")
    assert len([e for e in links if e.outcome == "applied"]) == ADOPTED
    assert all(e.details["provisioning_target"] == "github" for e in links)
    creates = [
        e for e in world.audit("idp.user.create") if e.employee_id == "E051" and e.outcome == "applied"
    ]
    assert [e.details["provisioning_target"] for e in creates] == ["directory", "github"]  # directory first
    assert "3 unmatched" in first.stdout and "2 disputed" in first.stdout and "50 unlinked" in first.stdout
    tickets = build_ticketing(
        TicketingSettings(
            kind="rt", base_url=world.rt.base_url, username=RT_ROOT_USER, password=SecretStr(RT_ROOT_PASSWORD)
        )
    )
    assert tickets is not None

    async def _ticket() -> object:
        async with tickets:
            return await tickets.find_ticket(f"tenure:E051:laptop:{HIRED}")

    assert asyncio.run(_ticket()) is not None
    _unchanged(world, (directory, github))

    # the access review names the target of each finding: the 2 disputed and 3 orphan github accounts
    review = world.tenure("review", "run", "--dry-run")
    assert review.exit_code == 0, review.output
    rows = [line.split() for line in review.stdout.splitlines() if len(line.split()) >= 5]
    in_github = {(r[1], r[2]) for r in rows if r[2] == "github"}
    assert in_github == {("disputed", "github"), ("orphan", "github")}
    assert sum(1 for r in rows if r[1:3] == ["disputed", "github"]) == 2
    assert sum(1 for r in rows if r[1:3] == ["orphan", "github"]) == 3
    assert _state(world.github, world.gh_token) == github  # a dry run changes nothing

    # the adopted accounts (and E051's) are linked now; the disputes and orphans are as they were
    assert "2 disputed, 51 linked, 0 unlinked, 3 unmatched" in world.tenure("sync", "--full").stdout

    # one person at a time (the webhook path): an engineer joiner gets both accounts, the directory first;
    # someone named in a dispute gets none in github (an account without an employee id holds their userName)
    world.rows.append(_row("E052", "Ines", "Vale", "Engineering"))
    world.write()
    joined = world.tenure("apply", "E052")
    assert joined.exit_code == 0, joined.output
    created = [line.split()[:3] for line in joined.stdout.splitlines() if "create_account" in line]
    assert created == [["applied", "directory", "create_account"], ["applied", "github", "create_account"]]
    assert "E052" in _by_employee(_state(world.github, world.gh_token))
    disputed = world.tenure("apply", "D001")
    assert disputed.exit_code == 0, disputed.output
    assert " github " not in disputed.stdout
    assert "D001" not in _by_employee(_state(world.github, world.gh_token))

    # tenure plan shows the target of each line
    world.row("E051")["department"] = "Sales"
    world.write()
    plan = world.tenure("plan", "E051")
    assert plan.exit_code == 0, plan.output
    assert any(line.split()[1:3] == ["github", "disable_account"] for line in plan.stdout.splitlines()[1:])

    # a mover out of Engineering loses the github account (disabled, groups removed); the directory's stays
    assert world.tenure("sync", "--full").exit_code == 1
    github = _state(world.github, world.gh_token)
    directory = _state(world.directory, world.token)
    (gh_e051,) = _by_employee(github)["E051"]
    assert gh_e051[1] is False and gh_e051[0] not in github["groups"]["developers"]
    assert _by_employee(directory)["E051"][0][1] is True
    _unchanged(world, (directory, github))

    # a leaver is disabled in both targets, github first, the directory last
    world.row("E001").update(status="terminated", termination_date=(TODAY - timedelta(days=1)).isoformat())
    world.write()
    assert world.tenure("sync", "--full").exit_code == 1
    github = _state(world.github, world.gh_token)
    directory = _state(world.directory, world.token)
    assert _by_employee(github)["E001"][0][1] is False and _by_employee(directory)["E001"][0][1] is False
    disables = [
        e.details["provisioning_target"]
        for e in world.audit("idp.user.disable")
        if e.employee_id == "E001" and e.outcome == "applied"
    ]
    assert disables == ["github", "directory"]
    _unchanged(world, (directory, github))

    # the KPIs carry the target: the leaver's termination → disabled, in the directory and in github
    kpis = world.tenure("kpi", "--json")
    assert kpis.exit_code == 0, kpis.output
    figures = json.loads(kpis.stdout)
    assert figures["termination_to_disable"]["count"] == 1
    assert figures["by_target"]["github"]["termination_to_disable"]["count"] == 1


def test_targets_in_policy_and_settings_must_agree(world: World) -> None:
    """A target in the policy without settings, or settings without a policy entry: exit 2 naming it."""
    unset = dict.fromkeys(k for k in world.env if k.startswith("TENURE_TARGETS__GITHUB__"))
    missing = world.tenure("sync", "--full", **unset)
    assert missing.exit_code == 2 and "'github' is in the policy but has no settings" in missing.output
    extra = world.tenure("sync", "--full", TENURE_TARGETS__SLACK__KIND="scim")
    assert extra.exit_code == 2 and "'slack' has settings" in extra.output, extra.output
    assert _state(world.github, world.gh_token)["users"]  # nothing ran: the pre-created accounts only
    assert not world.audit("idp.user.link")


def test_an_unreachable_target_fails_its_part_and_the_directory_goes_on(world: World) -> None:
    result = world.tenure(
        "sync",
        "--full",
        TENURE_TARGETS__GITHUB__BASE_URL="http://127.0.0.1:9/",
        TENURE_TARGETS__GITHUB__MAX_ATTEMPTS="1",
    )
    assert result.exit_code == 1, result.output
    assert "target github" in result.output
    assert "S001" in _by_employee(_state(world.directory, world.token))  # the directory was still reconciled
    (read,) = world.audit("sync.target.read")
    assert read.outcome == "failed" and read.details["provisioning_target"] == "github"


def test_an_incremental_first_run_adopts_and_the_brake_counts_per_target(world: World) -> None:
    """An incremental run correlates against the whole roster too (some accounts carry no employee id), and
    the brake counts each target's disables against that target's active accounts: 8 engineers moving to
    Sales are 8 of 51 github accounts (over 15 %) but 8 of 56 people overall (under 15 %)."""
    world.policy.write_text(POLICY + "brake: {max_disable_count: 100, max_disable_percent: 15}\n")
    first = world.tenure("sync")
    assert first.exit_code == 1, first.output  # the disputes
    assert len([e for e in world.audit("idp.user.link") if e.outcome == "applied"]) == ADOPTED
    before = (_state(world.directory, world.token), _state(world.github, world.gh_token))
    for row in world.rows[:8]:
        row["department"] = "Sales"
    world.write()
    refused = world.tenure("sync", "--full")
    assert refused.exit_code == 1
    assert "target github: mass-change brake refused the run: 8 account(s)" in refused.output, refused.output
    assert (_state(world.directory, world.token), _state(world.github, world.gh_token)) == before
    (brake,) = [e for e in world.audit("sync.brake") if e.details["provisioning_target"] == "github"]
    assert brake.outcome == "failed" and brake.details["disables"] == 8
