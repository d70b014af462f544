"""The access review end to end against a real scim2-server and a CSV HRIS: seeded findings, auto-remediation,
a campaign decided through the CLI (revoke one, keep one), revocation visible in the server, evidence
exported.

scim2-server records no sign-in times (SCIM core has none), so *dormant* is covered by the unit tests only.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlmodel import select
from typer.testing import CliRunner

from connectors.hris.csv_export import CSVExportHRIS
from connectors.idp.scim import SCIMIdentityProvider
from engine.auditor import Auditor
from engine.review import run_review
from lifecycle.policy import load_policy
from models.audit import AuditEvent, verify
from models.db import session_scope
from models.domain import AccountAttributes
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.support.actions import record_approval
from tests.support.hris_data import fake_people, write_csv
from tests.support.scim_server import SCIMServer, create_group

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
GROUPS = ("all-staff", "engineering", "finance", "prod-admin", "payments-approve", "payments-create")
POLICY = {
    "birthright": [
        {"groups": ["all-staff"]},
        {"match": {"department": "Engineering"}, "groups": ["engineering"]},
        {"match": {"department": "Finance"}, "groups": ["finance"]},
    ],
    "privileged_groups": [
        {"name": "prod-admin", "recertify_days": 90},
        {"name": "payments-approve", "recertify_days": 365},
    ],
    "review": {
        "sod_conflicts": [["payments-approve", "payments-create"]],
        "auto_remediate": ["terminated_active"],
        "fallback_reviewer": "it-security",
        "on_deadline": "revoke",
    },
}
# employee id -> (department, status, termination days ago or None, groups)
SEED: dict[str, tuple[str, str, int | None, tuple[str, ...]]] = {
    "E00001": ("Engineering", "active", None, ("all-staff", "engineering")),  # the manager
    "E00002": ("Engineering", "terminated", 20, ("all-staff", "engineering")),  # terminated_active
    "E00003": ("Engineering", "active", None, ("all-staff", "engineering", "finance")),  # outside_policy
    "E00004": (
        "Finance",
        "active",
        None,
        ("all-staff", "finance", "payments-approve", "payments-create"),
    ),  # SoD
    "E00005": ("Engineering", "active", None, ("all-staff", "engineering", "prod-admin")),  # recertification
}


def make_idp(base_url: str, token: str) -> SCIMIdentityProvider:
    return build_identity_provider(
        IdPSettings(kind="scim", base_url=base_url, token=SecretStr(token), requests_per_second=500.0)
    )


@dataclass
class World:
    base_url: str
    token: str
    database_url: str
    csv_path: Path
    policy_path: Path
    accounts: dict[str, str]  # employee id -> account id

    def env(self) -> dict[str, str]:
        return {
            "TENURE_DATABASE_URL": self.database_url,
            "TENURE_POLICY_FILE": str(self.policy_path),
            "TENURE_IDP__KIND": "scim",
            "TENURE_IDP__BASE_URL": self.base_url,
            "TENURE_IDP__TOKEN": self.token,
            "TENURE_IDP__REQUESTS_PER_SECOND": "500",
            "TENURE_HRIS__KIND": "csv",
            "TENURE_HRIS__PATH": str(self.csv_path),
            "TENURE_TICKETING__KIND": "none",
        }

    async def state(self) -> tuple[dict[str, bool], dict[str, set[str]]]:
        """(account id -> active, group name -> member ids) as the server has them now."""
        async with make_idp(self.base_url, self.token) as idp:
            active = {a.id: a.active async for page in idp.iter_users() for a in page}
            groups = {g.name: set(g.member_ids) for g in await idp.list_groups()}
        return active, groups


async def seed(server: SCIMServer, tmp_path: Path, database_url: str) -> World:
    rows = fake_people(len(SEED), seed=3, today=TODAY)
    for row in rows:
        department, status, gone, _ = SEED[row["employee_id"]]
        row.update(
            department=department,
            status=status,
            manager_id="" if row["employee_id"] == "E00001" else "E00001",
            hire_date=(TODAY - timedelta(days=400)).isoformat(),
            termination_date=(TODAY - timedelta(days=gone)).isoformat() if gone else "",
        )
    csv_path = write_csv(tmp_path / "hris.csv", rows)
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(POLICY))
    base_url = server.tenant_url()
    accounts: dict[str, str] = {}
    async with make_idp(base_url, server.token) as idp:
        group_ids = {name: str((await create_group(base_url, server.token, name))["id"]) for name in GROUPS}
        people = [(r["employee_id"], r["work_email"].split("@")[0], SEED[r["employee_id"]][3]) for r in rows]
        people.append(("X99999", "ghost.user", ("all-staff", "prod-admin")))  # orphan: no HR record
        for employee_id, user_name, groups in people:
            account = await idp.create_user(
                AccountAttributes(
                    user_name=user_name, employee_id=employee_id, given_name="Test", family_name="Person"
                )
            )
            accounts[employee_id] = account.id
            for group in groups:
                await idp.add_member(group_ids[group], account.id)
    for employee_id, group in (("E00004", "payments-approve"), ("E00005", "prod-admin")):
        await record_approval(database_url, employee_id, group, at=datetime.now(UTC))
    return World(base_url, server.token, database_url, csv_path, policy_path, accounts)


def cli(world: World, *args: str) -> Any:
    from tenure.cli import app

    return CliRunner().invoke(app, list(args), env=world.env())


def test_review_end_to_end(scim_server: SCIMServer, tmp_path: Path, fresh_sqlite_url: str) -> None:
    """Seeded findings are found; terminated-but-active is disabled in scim2-server; revoke and keep decided
    through the CLI; the revocation shows in scim2-server; the export holds the evidence; chain verifies."""
    world = asyncio.run(seed(scim_server, tmp_path, fresh_sqlite_url))
    acc = world.accounts

    dry = cli(world, "review", "run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "terminated_active  1" in dry.stdout and "orphan             1" in dry.stdout
    active, _ = asyncio.run(world.state())
    assert active[acc["E00002"]] is True  # a dry run changes nothing

    async def review() -> Any:
        async with make_idp(world.base_url, world.token) as idp:
            # 100 days from now, the prod-admin approval recorded today is due for re-certification
            return await run_review(
                hris=CSVExportHRIS(world.csv_path),
                idp=idp,
                ticketing=None,
                policy=load_policy(world.policy_path),
                auditor=Auditor(fresh_sqlite_url),
                now=datetime.now(UTC) + timedelta(days=100),
            )

    run = asyncio.run(review())
    found = {(f.kind.value, f.employee_id, f.group) for f in run.findings}
    assert found == {
        ("terminated_active", "E00002", None),
        ("outside_policy", "E00003", "finance"),
        ("sod_conflict", "E00004", "payments-approve+payments-create"),
        ("recertification", "E00005", "prod-admin"),
        ("orphan", "X99999", None),
    }
    active, groups = asyncio.run(world.state())
    assert active[acc["E00002"]] is False and active[acc["X99999"]] is True
    assert run.campaign_id and len(run.reviewers) == 4
    items = {f.kind.value: f for f in run.findings}
    assert run.reviewers[items["outside_policy"].id] != "it-security"  # the manager's user name
    assert run.reviewers[items["orphan"].id] == "it-security"

    revoke = cli(
        world,
        "review",
        "decide",
        run.campaign_id,
        items["sod_conflict"].id,
        "revoke",
        "--by",
        "mgr",
        "--reason",
        "separation of duties",
    )
    assert revoke.exit_code == 0, revoke.output
    keep = cli(
        world,
        "review",
        "decide",
        run.campaign_id,
        items["outside_policy"].id,
        "keep",
        "--by",
        "mgr",
        "--reason",
        "covers finance on-call",
    )
    assert keep.exit_code == 0, keep.output
    changed = cli(
        world, "review", "decide", run.campaign_id, items["outside_policy"].id, "revoke", "--by", "x"
    )
    assert changed.exit_code == 2 and "already decided" in changed.output

    _, groups = asyncio.run(world.state())
    assert acc["E00004"] not in groups["payments-create"] and acc["E00004"] in groups["payments-approve"]
    assert acc["E00003"] in groups["finance"]

    export = cli(world, "review", "export", run.campaign_id, "--format", "csv")
    assert export.exit_code == 0, export.output
    rows = {r["kind"]: r for r in csv.DictReader(io.StringIO(export.stdout))}
    assert set(rows) == {"terminated_active", "outside_policy", "sod_conflict", "recertification", "orphan"}
    assert (
        rows["sod_conflict"]["decision"],
        rows["sod_conflict"]["decided_by"],
        rows["sod_conflict"]["reason"],
        rows["sod_conflict"]["action_taken"],
        rows["sod_conflict"]["action_outcome"],
    ) == ("revoke", "mgr", "separation of duties", "remove_membership payments-create", "applied")
    assert (rows["outside_policy"]["decision"], rows["outside_policy"]["action_taken"]) == ("keep", "none")
    assert (rows["terminated_active"]["decided_by"], rows["terminated_active"]["action_outcome"]) == (
        "policy:auto_remediate",
        "applied",
    )
    assert rows["orphan"]["decision"] == "" and rows["orphan"]["decided_at"] == ""

    kpi = cli(world, "kpi", "--json")
    assert kpi.exit_code == 0, kpi.output
    assert '"orphan_accounts": 1' in kpi.stdout

    with session_scope(fresh_sqlite_url) as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert verify(session=session).ok
    for expected in (
        "review.finding",
        "review.campaign.create",
        "review.decision",
        "review.revoke",
        "idp.user.disable",
        "idp.membership.remove",
        "review.run",
    ):
        assert expected in actions, expected
