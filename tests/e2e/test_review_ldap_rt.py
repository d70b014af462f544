"""The access review end to end against real peers: OpenLDAP (slapd) as the IdP, Request Tracker 5 for the
reviewers' tickets, a CSV HRIS and a fresh SQLite audit database.

Every finding kind of :mod:`lifecycle.review` is seeded: an orphan, a terminated-but-active leaver, a dormant
account (it bound once: slapd's lastbind overlay records ``authTimestamp``), a managed group outside policy,
a separation-of-duties pair, and a privileged group whose approval (recorded the way the lifecycle flows
record it: an approved REQUEST_APPROVAL through the Applier) is due for re-certification. The review runs
100 days after the seeding through :func:`engine.review.run_review` (the engine of the ``access-review``
flow); decisions and the export go through the CLI in a subprocess. slapd and RT are the module-scoped
peer fixtures of tests/conftest.py.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import ldap3
import pytest
import yaml
from pydantic import SecretStr
from sqlmodel import select

from connectors.ticketing.rt import reference_query, ticket_sql_string
from engine.applier import Applier
from engine.auditor import Auditor
from engine.review import AUTO_REVIEWER, ReviewRun, campaign_reference, run_review
from lifecycle.actions import Plan, RequestApproval
from lifecycle.policy import Policy, load_policy
from lifecycle.review import FindingKind
from models.audit import AuditEvent, Outcome, verify
from models.db import session_scope
from models.domain import AccountAttributes
from models.review import ReviewAssignment, ReviewCampaign
from tenure.compose import open_connectors
from tenure.settings import HRISSettings, IdPSettings, Settings, TicketingSettings
from tests.support.hris_data import fake_people, write_csv
from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER, RTServer
from tests.support.slapd import SlapdHandle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TODAY = datetime.now(UTC).date()
REVIEW_AFTER = timedelta(days=100)  # > dormant_days (90) and > prod-admin's recertify_days (90)
GROUPS = (
    "all-staff",
    "engineering",
    "github-users",
    "finance",
    "erp-users",
    "prod-admin",
    "payments-approve",
    "payments-create",
)
ENGINEERING = ("all-staff", "engineering", "github-users")  # birthright in examples/policy.yaml
FINANCE = ("all-staff", "finance", "erp-users")
# employee id -> (department, status, terminated days ago or None, groups held, privileged groups approved)
SEED: dict[str, tuple[str, str, int | None, tuple[str, ...], tuple[str, ...]]] = {
    "E00001": ("Engineering", "active", None, ENGINEERING, ()),  # everyone's manager: the reviewer
    "E00002": ("Engineering", "terminated", 20, ENGINEERING, ()),  # terminated_active
    "E00003": ("Engineering", "active", None, (*ENGINEERING, "finance"), ()),  # outside_policy
    "E00004": ("Finance", "active", None, (*FINANCE, "payments-create"), ("payments-approve",)),  # SoD
    "E00005": ("Engineering", "active", None, ENGINEERING, ("prod-admin",)),  # recertification
    "E00006": ("Engineering", "active", None, ENGINEERING, ()),  # dormant: binds once, then silence
}
ORPHAN = ("X99999", "ghost.user", ("all-staff",))  # an account without an HR record
SIGN_IN_PASSWORD = "dormant-bind-once"
EXPECTED = {
    ("terminated_active", "E00002", None),
    ("outside_policy", "E00003", "finance"),
    ("sod_conflict", "E00004", "payments-approve+payments-create"),
    ("recertification", "E00005", "prod-admin"),
    ("dormant", "E00006", None),
    ("orphan", "X99999", None),
}


def review_policy(tmp_path: Path) -> Path:
    """examples/policy.yaml with payments-approve re-certified yearly (so the SoD employee's fresh approval
    raises no re-certification finding of its own)."""
    raw = yaml.safe_load((REPO / "examples" / "policy.yaml").read_text())
    for group in raw["privileged_groups"]:
        if group["name"] == "payments-approve":
            group["recertify_days"] = 365
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass
class World:
    settings: Settings
    policy: Policy
    slapd: SlapdHandle
    accounts: dict[str, str]  # employee id -> account id (entryUUID)
    user_names: dict[str, str]  # employee id -> user name (uid)

    def env(self) -> dict[str, str]:
        s = self.settings
        assert s.idp.password is not None and s.ticketing.password is not None
        return {
            **os.environ,
            "TENURE_DATABASE_URL": s.database_url,
            "TENURE_POLICY_FILE": str(s.policy_file),
            "TENURE_IDP__KIND": "ldap",
            "TENURE_IDP__BASE_URL": s.idp.base_url,
            "TENURE_IDP__BIND_DN": s.idp.bind_dn or "",
            "TENURE_IDP__PASSWORD": s.idp.password.get_secret_value(),
            "TENURE_IDP__BASE_DN": s.idp.base_dn or "",
            "TENURE_HRIS__KIND": "csv",
            "TENURE_HRIS__PATH": str(s.hris.path),
            "TENURE_TICKETING__KIND": "rt",
            "TENURE_TICKETING__BASE_URL": s.ticketing.base_url or "",
            "TENURE_TICKETING__USERNAME": s.ticketing.username or "",
            "TENURE_TICKETING__PASSWORD": s.ticketing.password.get_secret_value(),
        }

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenure.cli", *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def entry_dn(self, employee_id: str) -> str:
        """The entry's DN as slapd has it now (read as the root DN, bypassing the connector)."""
        conn = self.slapd.admin_connection()
        try:
            conn.search(self.slapd.base_dn, f"(employeeNumber={employee_id})", ldap3.SUBTREE, attributes=[])
            dns = [e["dn"] for e in conn.response if e.get("type") == "searchResEntry"]
        finally:
            conn.unbind()
        assert len(dns) == 1, dns
        return str(dns[0])

    def members(self, group: str) -> set[str]:
        """The member DNs of a group, lower-cased, as slapd has them now."""
        conn = self.slapd.admin_connection()
        try:
            conn.search(self.slapd.groups_dn, f"(cn={group})", ldap3.LEVEL, attributes=["member"])
            entries = [e for e in conn.response if e.get("type") == "searchResEntry"]
        finally:
            conn.unbind()
        assert len(entries) == 1, entries
        return {str(dn).lower() for dn in entries[0]["attributes"].get("member", [])}

    def holds(self, employee_id: str, group: str) -> bool:
        return self.entry_dn(employee_id).lower() in self.members(group)


def _bind_once(slapd: SlapdHandle, dn: str) -> None:
    """Give the entry a password and bind as it: a real sign-in, which lastbind stamps as authTimestamp."""
    admin = slapd.admin_connection()
    try:
        admin.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [SIGN_IN_PASSWORD])]})
    finally:
        admin.unbind()
    user = ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE, connect_timeout=5),
        user=dn,
        password=SIGN_IN_PASSWORD,
        raise_exceptions=True,
    )
    try:
        user.bind()
    finally:
        user.unbind()


async def _approve(action: RequestApproval) -> tuple[bool, str, str]:
    return True, "security-lead", "seeded approval"


async def seed(slapd: SlapdHandle, rt: RTServer, tmp_path: Path, database_url: str) -> World:
    """The roster, the directory and the approvals described by SEED (the same for every run of the test)."""
    slapd.clear()
    rows = fake_people(len(SEED), seed=11, today=TODAY)
    for row in rows:
        department, status, gone, _, _ = SEED[row["employee_id"]]
        row.update(
            department=department,
            status=status,
            location="London",
            employment_type="employee",
            manager_id="" if row["employee_id"] == "E00001" else "E00001",
            hire_date=(TODAY - timedelta(days=400)).isoformat(),
            termination_date=(TODAY - timedelta(days=gone)).isoformat() if gone else "",
        )
    policy_path = review_policy(tmp_path)
    settings = Settings(
        database_url=database_url,
        policy_file=policy_path,
        idp=IdPSettings(
            kind="ldap",
            base_url=slapd.url,
            bind_dn=slapd.admin_dn,
            password=SecretStr(slapd.admin_password),
            base_dn=slapd.base_dn,
        ),
        hris=HRISSettings(kind="csv", path=write_csv(tmp_path / "hris.csv", rows)),
        ticketing=TicketingSettings(
            kind="rt",
            base_url=rt.base_url,
            username=RT_ROOT_USER,
            password=SecretStr(RT_ROOT_PASSWORD),
            queue="General",
        ),
    )
    policy = load_policy(policy_path)
    people = [(r["employee_id"], r["work_email"].split("@")[0], SEED[r["employee_id"]][3]) for r in rows]
    people.append(ORPHAN)
    accounts: dict[str, str] = {}
    user_names: dict[str, str] = {}
    async with open_connectors(settings) as connectors:
        idp = connectors.idp
        group_ids = {name: (await idp.create_group(name)).id for name in GROUPS}
        for employee_id, user_name, groups in people:
            account = await idp.create_user(
                AccountAttributes(
                    user_name=user_name, employee_id=employee_id, given_name="Test", family_name="Person"
                )
            )
            accounts[employee_id], user_names[employee_id] = account.id, user_name
            for group in groups:
                await idp.add_member(group_ids[group], account.id)
        # Privileged grants the way the lifecycle flows make them: an approved REQUEST_APPROVAL, applied
        # (membership added, ``approval.request`` audited, ledger entry written).
        applier = Applier(
            idp=idp, ticketing=None, auditor=Auditor(database_url, actor="seed"), approver=_approve
        )
        for employee_id, (*_, approved) in SEED.items():
            if not approved:
                continue
            account = await idp.find_user_by_employee_id(employee_id)
            plan = Plan(
                employee_id=employee_id,
                event="none",
                actions=[
                    RequestApproval(
                        employee_id=employee_id,
                        group=group,
                        reason="seeded privileged grant",
                        approvers=("security-lead",),
                    )
                    for group in approved
                ],
            )
            report = await applier.apply(plan, account)
            assert report.ok, report.markdown()
    world = World(settings, policy, slapd, accounts, user_names)
    _bind_once(slapd, world.entry_dn("E00006"))
    return world


async def review(world: World, *, dry_run: bool = False) -> ReviewRun:
    """One review run through the engine of the ``access-review`` flow, 100 days after the seeding."""
    async with open_connectors(world.settings) as connectors:
        return await run_review(
            hris=connectors.hris,
            idp=connectors.idp,
            ticketing=connectors.ticketing,
            policy=world.policy,
            auditor=Auditor(world.settings.database_url),
            now=datetime.now(UTC) + REVIEW_AFTER,
            dry_run=dry_run,
        )


async def rt_tickets(rt: RTServer, query: str) -> list[str]:
    """Subjects of the RT tickets matching a TicketSQL query (asked of RT itself, not the connector)."""
    async with httpx.AsyncClient(auth=(RT_ROOT_USER, RT_ROOT_PASSWORD), timeout=30) as client:
        response = await client.get(
            f"{rt.rest_url}tickets", params={"query": query, "per_page": 100, "fields": "Subject"}
        )
    response.raise_for_status()
    body = response.json()
    assert int(body["total"]) == len(body["items"])
    return [str(item["Subject"]) for item in body["items"]]


def _audit(database_url: str, action: str) -> list[AuditEvent]:
    with session_scope(database_url) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


async def test_review_against_openldap_and_rt(
    slapd: SlapdHandle, rt: RTServer, tmp_path: Path, fresh_sqlite_url: str
) -> None:
    """Each finding kind found as seeded with stable ids; the leaver disabled in slapd; one RT ticket per
    reviewer; a revoke (membership gone in slapd) and a keep through the CLI; export and chain verify."""
    world = await seed(slapd, rt, tmp_path, fresh_sqlite_url)
    db = fresh_sqlite_url

    # Only the account that bound carries a sign-in: the dormant finding rests on real evidence.
    async with open_connectors(world.settings) as connectors:
        seen = {a.employee_id: a.last_sign_in async for page in connectors.idp.iter_users() for a in page}
    assert {e for e, at in seen.items() if at is not None} == {"E00006"}
    assert abs(seen["E00006"] - datetime.now(UTC)) < timedelta(minutes=5)  # type: ignore[operator]

    # A dry run finds everything and changes nothing.
    dry = await review(world, dry_run=True)
    assert {(f.kind.value, f.employee_id, f.group) for f in dry.findings} == EXPECTED
    assert dry.campaign_id is None
    assert world.entry_dn("E00002").lower().endswith(f",{slapd.people_dn}".lower())

    run = await review(world)
    found = {(f.kind.value, f.employee_id, f.group) for f in run.findings}
    assert found == EXPECTED
    assert {f.id for f in run.findings} == {f.id for f in dry.findings}  # stable ids across runs
    by_kind = {f.kind: f for f in run.findings}
    # every kind once each, but for disputed accounts: those come from correlating a second target
    # (tests/e2e/test_targets_real_peers.py)
    assert set(by_kind) == set(FindingKind) - {FindingKind.DISPUTED}
    assert by_kind[FindingKind.SOD_CONFLICT].revoke_group == "payments-create"  # the unapproved side

    # terminated_active auto-remediated: the entry moved under ou=disabled; nobody else was disabled.
    leaver = by_kind[FindingKind.TERMINATED_ACTIVE]
    assert run.auto[leaver.id].outcome is Outcome.APPLIED
    assert world.entry_dn("E00002").lower().endswith(f",{slapd.disabled_dn}".lower())
    for employee_id in ("E00001", "E00003", "E00004", "E00005", "E00006", "X99999"):
        assert world.entry_dn(employee_id).lower().endswith(f",{slapd.people_dn}".lower()), employee_id

    # The campaign: everything but the auto-remediated leaver, routed to the manager or the fallback.
    campaign = run.campaign_id
    assert campaign is not None and set(run.reviewers) == {f.id for f in run.findings} - {leaver.id}
    manager = world.user_names["E00001"]
    assert run.reviewers[by_kind[FindingKind.ORPHAN].id] == world.policy.review.fallback_reviewer
    assert {
        run.reviewers[by_kind[k].id]
        for k in by_kind
        if k not in (FindingKind.ORPHAN, FindingKind.TERMINATED_ACTIVE)
    } == {manager}
    reviewers = {manager, world.policy.review.fallback_reviewer}
    assert set(run.tickets) == reviewers and all(run.tickets.values())
    with session_scope(db) as session:
        assert session.get(ReviewCampaign, campaign) is not None
        assignments = session.exec(
            select(ReviewAssignment).where(ReviewAssignment.campaign_id == campaign)
        ).all()
    assert {a.reviewer: a.ticket_id for a in assignments} == run.tickets

    # One RT ticket per reviewer, counted in RT by reference; no other ticket for this campaign.
    for reviewer in reviewers:
        subjects = await rt_tickets(rt, reference_query(campaign_reference(campaign, reviewer)))
        assert len(subjects) == 1, (reviewer, subjects)
    prefix = ticket_sql_string(f"[tenure:review:{campaign}:")
    everything = await rt_tickets(rt, f"Subject STARTSWITH {prefix}")
    assert len(everything) == len(reviewers)

    # A re-run (dry, so no second campaign) gives the same ids for what is still open.
    again = await review(world, dry_run=True)
    assert {f.id for f in again.findings} == {f.id for f in run.findings} - {leaver.id}

    # Decisions through the CLI: revoke the SoD pair's unapproved side, keep the outside-policy grant.
    sod, outside = by_kind[FindingKind.SOD_CONFLICT], by_kind[FindingKind.OUTSIDE_POLICY]
    assert world.holds("E00004", "payments-create") and world.holds("E00003", "finance")
    revoke = world.cli(
        "review", "decide", campaign, sod.id, "revoke", "--by", manager, "--reason", "separation of duties"
    )
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    keep = world.cli(
        "review",
        "decide",
        campaign,
        outside.id,
        "keep",
        "--by",
        manager,
        "--reason",
        "covers finance on-call",
    )
    assert keep.returncode == 0, keep.stdout + keep.stderr
    assert not world.holds("E00004", "payments-create")  # the revoke applied in slapd
    assert world.holds("E00004", "payments-approve") and world.holds("E00003", "finance")

    # The evidence: every item with its decision, reviewer, timestamps and the action taken.
    export = world.cli("review", "export", campaign, "--format", "csv")
    assert export.returncode == 0, export.stderr
    rows = {r["item"]: r for r in csv.DictReader(io.StringIO(export.stdout))}
    assert set(rows) == {f.id for f in run.findings}
    assert {r["kind"] for r in rows.values()} == {k.value for k in by_kind}
    for row in rows.values():
        assert row["campaign"] == campaign and row["created_at"] and row["deadline_at"]
    r = rows[sod.id]
    assert (r["decision"], r["reviewer"], r["decided_by"], r["reason"]) == (
        "revoke",
        manager,
        manager,
        "separation of duties",
    )
    assert (r["action_taken"], r["action_outcome"]) == ("remove_membership payments-create", "applied")
    assert r["decided_at"] and r["action_at"]
    r = rows[outside.id]
    assert (r["decision"], r["reviewer"], r["decided_by"], r["reason"], r["action_taken"]) == (
        "keep",
        manager,
        manager,
        "covers finance on-call",
        "none",
    )
    assert r["decided_at"] and r["action_outcome"] == "" and r["action_at"] == ""
    r = rows[leaver.id]
    assert (r["decision"], r["reviewer"], r["decided_by"], r["action_outcome"]) == (
        "revoke",
        AUTO_REVIEWER,
        AUTO_REVIEWER,
        "applied",
    )
    assert r["action_taken"] == f"disable_account {world.user_names['E00002']}" and r["action_at"]
    for kind in (FindingKind.ORPHAN, FindingKind.DORMANT, FindingKind.RECERTIFICATION):
        r = rows[by_kind[kind].id]
        assert (r["decision"], r["decided_at"], r["action_taken"]) == ("", "", ""), kind
        assert r["reviewer"] in reviewers

    # The audit trail: findings, campaign, tickets, decisions and changes recorded; the chain verifies.
    assert len(
        [e for e in _audit(db, "review.finding") if (e.details or {}).get("campaign") == campaign]
    ) == len(EXPECTED)
    tickets = [
        e
        for e in _audit(db, "ticket.create")
        if e.outcome == Outcome.APPLIED.value and e.details["target"] == "access-review"
    ]
    assert len(tickets) == len(reviewers)
    assert len(_audit(db, "review.decision")) == 2
    assert [
        e.details["target"] for e in _audit(db, "idp.membership.remove") if e.outcome == Outcome.APPLIED.value
    ] == ["payments-create"]
    assert [e.employee_id for e in _audit(db, "idp.user.disable") if e.outcome == Outcome.APPLIED.value] == [
        "E00002"
    ]
    verified = world.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with session_scope(db) as session:
        assert verify(session=session).ok
