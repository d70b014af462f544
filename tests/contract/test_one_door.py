"""The parts agree when they meet (issue "One source of truth"), on a real scim2-server, SQLite and PostgreSQL:

- a reviewer's revoke stays revoked through sync and reconcile; a keep stays kept until re-certification is due;
- two whole syncs at once leave one account per employee and one ``applied`` audit row per create;
- a failed create fails that employee only: the rest of the batch is provisioned, the next run completes it;
- a joiner started by a webhook while a full sync runs over the same person: one account, one set of tickets.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from connectors.errors import ConnectorError, PermanentAPIError
from connectors.hris.csv_export import CSVExportHRIS
from connectors.idp.fallback import create_one_by_one
from connectors.protocols import Connectors
from engine.auditor import Auditor
from engine.reconcile import plan_employee, reconcile
from engine.review import decide, run_review
from engine.sync import SyncEngine, SyncOptions
from lifecycle.policy import Policy
from models.audit import AuditEvent, Outcome, verify
from models.db import session_scope
from models.domain import Account, AccountAttributes, Ticket, TicketRequest, TicketStatus
from models.ledger import Grant, GrantStatus
from tests.contract.test_sync_scim import POLICY, World, make_world, people
from tests.support.actions import record_approval
from tests.support.scim_server import SCIMServer

pytestmark = pytest.mark.slow

PRIVILEGED_POLICY = Policy.model_validate(
    {
        **POLICY.model_dump(exclude={"privileged_groups", "review"}),
        "privileged_groups": [{"name": "prod-admin", "approvers": ["security-lead"], "recertify_days": 90}],
        "review": {"auto_remediate": [], "dormant_days": 10_000},
    }
)
JOINER_TICKETS = Policy.model_validate(
    {
        **POLICY.model_dump(exclude={"tickets"}),
        "tickets": {"joiner": [{"purpose": "laptop", "title": "Laptop for {employee_id}", "body": "laptop"}]},
        "adopt_before": "2000-01-01",  # staff hired 100 days ago are joiners here, not adopted
    }
)


class Tickets:
    """An in-memory ticketing system, idempotent by reference like the real ones, that counts creations."""

    source = "tickets"

    def __init__(self) -> None:
        self.by_reference: dict[str, Ticket] = {}
        self.creates: Counter[str] = Counter()

    async def __aenter__(self) -> Tickets:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        self.creates[request.reference] += 1
        await asyncio.sleep(0)
        return self.by_reference.setdefault(
            request.reference,
            Ticket(
                id=str(len(self.by_reference) + 1),
                reference=request.reference,
                title=request.title,
                status=TicketStatus.OPEN,
            ),
        )

    async def find_ticket(self, reference: str) -> Ticket | None:
        return self.by_reference.get(reference)

    async def add_comment(self, ticket_id: str, text: str) -> None:
        return None

    async def get_status(self, ticket_id: str) -> TicketStatus:
        return TicketStatus.OPEN

    async def close_ticket(self, ticket_id: str) -> None:
        return None


@pytest.fixture
async def pg_world(scim_server: SCIMServer, tmp_path: Path, database_url: str) -> Any:
    """A fresh tenant with the policy's groups and prod-admin, 20 employees, on SQLite and on PostgreSQL."""
    w = await make_world(
        scim_server, tmp_path, database_url, groups=("all-staff", "engineering", "sales", "prod-admin")
    )
    try:
        yield w
    finally:
        await w.idp.aclose()


def _events(world: World, action: str) -> list[AuditEvent]:
    with session_scope(world.database_url) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


async def _plan_groups(
    world: World, employee_id: str, policy: Policy, now: datetime
) -> list[tuple[str, str]]:
    connectors = Connectors(hris=CSVExportHRIS(world.csv_path), idp=world.idp, ticketing=None)
    plan, _ = await plan_employee(
        employee_id, connectors=connectors, policy=policy, database_url=world.database_url, now=now
    )
    return [(a.kind.value, a.subject) for a in plan.actions]


async def _member_of(world: World, employee_id: str) -> frozenset[str]:
    return (await world.accounts())[employee_id].groups


async def _review_item(world: World, employee_id: str, now: datetime, policy: Policy) -> tuple[str, str]:
    """Run a review at ``now``; the campaign and item about ``employee_id``'s prod-admin membership."""
    run = await run_review(
        hris=CSVExportHRIS(world.csv_path),
        idp=world.idp,
        ticketing=None,
        policy=policy,
        auditor=Auditor(world.database_url, actor="test"),
        now=now,
    )
    (finding,) = [f for f in run.findings if f.employee_id == employee_id and f.revoke_group == "prod-admin"]
    assert run.campaign_id is not None
    return run.campaign_id, finding.id


async def test_revoke_stays_revoked_through_sync_and_reconcile(pg_world: World) -> None:
    """An approved privileged membership revoked in review is not planned, synced or reconciled back."""
    world = pg_world
    await world.sync(full=True)
    employee_id = world.rows[0]["employee_id"]
    approved_at = datetime.now(UTC)
    await record_approval(world.database_url, employee_id, "prod-admin", at=approved_at)
    later = approved_at + timedelta(days=1)
    assert ("add_membership", "prod-admin") in await _plan_groups(
        world, employee_id, PRIVILEGED_POLICY, later
    )
    await world.sync(PRIVILEGED_POLICY, full=True)
    assert "prod-admin" in await _member_of(world, employee_id)

    due = approved_at + timedelta(days=120)  # past recertify_days: the review asks for a decision
    campaign, item = await _review_item(world, employee_id, due, PRIVILEGED_POLICY)
    decided = await decide(
        database_url=world.database_url,
        campaign_id=campaign,
        item_id=item,
        decision="revoke",
        by="alice",
        reason="no longer on call",
        idp=world.idp,
        ticketing=None,
        policy=PRIVILEGED_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=due,
    )
    assert decided.action_outcome == Outcome.APPLIED.value
    assert "prod-admin" not in await _member_of(world, employee_id)

    assert ("add_membership", "prod-admin") not in await _plan_groups(
        world, employee_id, PRIVILEGED_POLICY, due
    )
    report = await world.sync(PRIVILEGED_POLICY, full=True)
    assert report.ok and report.idp_writes == 0
    connectors = Connectors(hris=CSVExportHRIS(world.csv_path), idp=world.idp, ticketing=None)
    again = await reconcile(
        employee_id,
        connectors=connectors,
        policy=PRIVILEGED_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=due,
    )
    assert again.ok and again.results == []
    assert "prod-admin" not in await _member_of(world, employee_id)
    with session_scope(world.database_url) as session:
        grant = session.get(Grant, (employee_id, "prod-admin"))
    assert grant is not None and grant.status == GrantStatus.REVOKED.value and grant.decided_by == "alice"

    # a new approval (recorded after the revoke) grants it again
    await record_approval(world.database_url, employee_id, "prod-admin", at=due + timedelta(hours=1))
    await world.sync(PRIVILEGED_POLICY, full=True)
    assert "prod-admin" in await _member_of(world, employee_id)


async def test_keep_stays_kept_until_recertification_is_due(pg_world: World) -> None:
    """A privileged membership granted by hand and kept in review survives every sync; at the due date the
    review asks again, and the sync still leaves it to the reviewer."""
    world = pg_world
    await world.sync(PRIVILEGED_POLICY, full=True)
    employee_id = world.rows[1]["employee_id"]
    account = (await world.accounts())[employee_id]
    groups = {g.name: g.id for g in await world.idp.list_groups()}
    await world.idp.add_member(groups["prod-admin"], account.id)  # by hand, no approval

    now = datetime.now(UTC)
    campaign, item = await _review_item(world, employee_id, now, PRIVILEGED_POLICY)
    await decide(
        database_url=world.database_url,
        campaign_id=campaign,
        item_id=item,
        decision="keep",
        by="bob",
        reason="break-glass owner",
        idp=world.idp,
        ticketing=None,
        policy=PRIVILEGED_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=now,
    )
    report = await world.sync(PRIVILEGED_POLICY, full=True)
    assert report.ok and report.idp_writes == 0
    assert "prod-admin" in await _member_of(world, employee_id)
    assert ("remove_membership", "prod-admin") not in await _plan_groups(
        world, employee_id, PRIVILEGED_POLICY, now
    )
    with session_scope(world.database_url) as session:
        grant = session.get(Grant, (employee_id, "prod-admin"))
    assert grant is not None and grant.status == GrantStatus.GRANTED.value
    assert grant.recertify_until is not None

    not_yet = await run_review(
        hris=CSVExportHRIS(world.csv_path),
        idp=world.idp,
        ticketing=None,
        policy=PRIVILEGED_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=now + timedelta(days=30),
    )
    assert not [f for f in not_yet.findings if f.employee_id == employee_id]
    due = await run_review(
        hris=CSVExportHRIS(world.csv_path),
        idp=world.idp,
        ticketing=None,
        policy=PRIVILEGED_POLICY,
        auditor=Auditor(world.database_url, actor="test"),
        now=now + timedelta(days=91),
    )
    assert [f.kind.value for f in due.findings if f.employee_id == employee_id] == ["recertification"]


async def test_two_full_syncs_at_once_make_one_account_per_employee(pg_world: World) -> None:
    """Two concurrent full syncs (per-person locks, no job lock): one account and one applied create row each."""
    world = pg_world
    world.rows = people(60)
    world.write()
    first, second = await asyncio.gather(world.sync(full=True), world.sync(full=True))
    assert first.ok and second.ok, (first.failures, second.failures)
    accounts = await world.accounts()
    assert len(accounts) == 60
    creates = Counter(
        e.employee_id for e in _events(world, "idp.user.create") if e.outcome == Outcome.APPLIED.value
    )
    assert set(creates) == {r["employee_id"] for r in world.rows} and set(creates.values()) == {1}
    adds = Counter(
        (e.employee_id, e.details["target"])
        for e in _events(world, "idp.membership.add")
        if e.outcome == Outcome.APPLIED.value
    )
    assert set(adds.values()) == {1}
    with session_scope(world.database_url) as session:
        assert verify(session=session).ok
    assert (await world.sync(full=True)).idp_writes == 0


class FailingCreate:
    """The world's IdP, except that creating ``employee_id``'s account is refused (400) until ``healed``."""

    def __init__(self, idp: Any, employee_id: str) -> None:
        self._idp, self.employee_id, self.healed = idp, employee_id, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._idp, name)

    async def create_user(self, attributes: AccountAttributes) -> Account:
        if attributes.employee_id == self.employee_id and not self.healed:
            raise PermanentAPIError("invalidValue: userName rejected", source="scim", status_code=400)
        return await self._idp.create_user(attributes)

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        return await create_one_by_one(attributes, self.create_user)


async def test_failed_create_fails_that_employee_only(pg_world: World) -> None:
    """One refused POST /Users in a batch of 40: 39 provisioned with tickets, the failed one's tickets skipped
    with the reason, the run not ok; the next run completes it, one ticket each."""
    world = pg_world
    world.rows = people(40)
    world.write()
    victim = world.rows[7]["employee_id"]
    idp = FailingCreate(world.idp, victim)
    tickets = Tickets()

    def engine() -> SyncEngine:
        return SyncEngine(
            hris=CSVExportHRIS(world.csv_path),
            idp=idp,
            ticketing=tickets,
            policy=JOINER_TICKETS,
            auditor=Auditor(world.database_url, actor="test"),
            options=SyncOptions(full=True, max_concurrency=8),
        )

    report = await engine().run()
    assert not report.ok and report.failed == 1 and victim in report.failures[0]
    accounts = await world.accounts()
    assert len(accounts) == 39 and victim not in accounts
    skipped = [e for e in _events(world, "ticket.create") if e.employee_id == victim]
    assert [e.outcome for e in skipped] == [Outcome.SKIPPED.value]
    assert "the account could not be created" in skipped[0].reason
    assert len(tickets.by_reference) == 39

    idp.healed = True
    report = await engine().run()
    assert report.ok, report.failures
    assert len(await world.accounts()) == 40
    assert len(tickets.by_reference) == 40 and set(tickets.creates.values()) == {1}


async def test_webhook_joiner_during_a_full_sync_makes_one_account_and_one_set_of_tickets(
    pg_world: World,
) -> None:
    """The joiner run (as the webhook starts it) and a full sync over the same new hire: one create, one ticket."""
    world = pg_world
    world.rows = people(30)
    world.write()
    tickets = Tickets()
    hire = world.rows[-1]["employee_id"]
    sync = SyncEngine(
        hris=CSVExportHRIS(world.csv_path),
        idp=world.idp,
        ticketing=tickets,
        policy=JOINER_TICKETS,
        auditor=Auditor(world.database_url, actor="sync"),
        options=SyncOptions(full=True, max_concurrency=4, batch_size=5),
    )
    connectors = Connectors(hris=CSVExportHRIS(world.csv_path), idp=world.idp, ticketing=tickets)

    async def joiner() -> Any:
        await asyncio.sleep(0.05)
        return await reconcile(
            hire,
            connectors=connectors,
            policy=JOINER_TICKETS,
            auditor=Auditor(world.database_url, actor="webhook"),
        )

    report, joined = await asyncio.gather(sync.run(), joiner())
    assert report.ok and joined.ok, (report.failures, joined.failed)
    creates = [e for e in _events(world, "idp.user.create") if e.employee_id == hire]
    assert [e.outcome for e in creates if e.outcome == Outcome.APPLIED.value] == [Outcome.APPLIED.value]
    assert [a.employee_id for a in (await world.accounts()).values()].count(hire) == 1
    hire_tickets = {ref: n for ref, n in tickets.creates.items() if f":{hire}:" in ref}
    assert list(hire_tickets.values()) == [1]
    assert (
        sum(1 for e in _events(world, "ticket.create") if e.employee_id == hire and e.outcome == "applied")
        == 1
    )


async def test_second_sync_refuses_while_the_first_holds_the_job_lock(pg_world: World) -> None:
    """Inside ``async with`` a sync holds its job lock: a second one refuses at once, naming the holder."""
    from engine.locks import LockHeld

    world = pg_world
    first = world.engine(full=True)
    async with first:
        second = world.engine(full=True)
        with pytest.raises(LockHeld, match="locked by run"):
            async with second:
                pass
    async with world.engine(full=True) as third:
        assert (await third.run()).ok


async def test_cli_plan_unknown_employee_and_approve(
    pg_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tenure plan NOSUCH` / `apply NOSUCH`: exit 1, one line, no traceback; `tenure approve` records a grant
    through the one door and the next plan adds the group; a group outside the policy's privileged ones: exit 2."""
    from typer.testing import CliRunner

    from tenure.cli import app
    from tests.contract.test_sync_scim import _cli_env

    world = pg_world
    _cli_env(world, tmp_path, monkeypatch)
    policy_file = tmp_path / "privileged.yaml"
    policy_file.write_text(PRIVILEGED_POLICY.model_dump_json(), encoding="utf-8")
    monkeypatch.setenv("TENURE_POLICY_FILE", str(policy_file))
    monkeypatch.setenv("TENURE_DATABASE_URL", world.database_url)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    for command in ("plan", "apply"):
        unknown = await asyncio.to_thread(invoke, command, "NOSUCH")
        assert unknown.exit_code == 1, unknown.output
        assert "no employee NOSUCH" in unknown.output and "Traceback" not in unknown.output
    await world.sync(PRIVILEGED_POLICY, full=True)
    employee_id = world.rows[2]["employee_id"]
    refused = await asyncio.to_thread(invoke, "approve", employee_id, "engineering", "--by", "lead")
    assert refused.exit_code == 2 and "not a privileged group" in refused.output
    approved = await asyncio.to_thread(invoke, "approve", employee_id, "prod-admin", "--by", "lead")
    assert approved.exit_code == 0, approved.output
    planned = await asyncio.to_thread(invoke, "plan", employee_id)
    assert planned.exit_code == 0 and "add_membership" in planned.output and "prod-admin" in planned.output
    assert [e.outcome for e in _events(world, "approval.record")] == [Outcome.APPLIED.value]


async def test_two_cli_syncs_at_once_on_postgres(
    scim_server: SCIMServer, tmp_path: Path, fresh_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `tenure sync --full` processes at once over 300 new employees on PostgreSQL: each exits 0 or refuses
    with exit 1 naming the holder, no traceback; one account and one applied create row per employee; the audit
    chain verifies."""
    import os
    import subprocess
    import sys

    from tests.contract.test_sync_scim import _cli_env

    world = await make_world(scim_server, tmp_path, fresh_pg_url)
    try:
        world.rows = people(300)
        world.write()
        _cli_env(world, tmp_path, monkeypatch)
        command = [sys.executable, "-m", "tenure.cli", "sync", "--full"]
        runs = [
            subprocess.Popen(
                command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [await asyncio.to_thread(run.communicate, timeout=600) for run in runs]
        codes = sorted(run.returncode for run in runs)
        for (out, err), run in zip(results, runs, strict=True):
            assert "Traceback" not in out + err, err
            if run.returncode == 1:
                assert "locked by run" in err, err
        assert codes in ([0, 0], [0, 1]), results
        accounts = await world.accounts()
        assert len(accounts) == 300
        creates = Counter(
            e.employee_id for e in _events(world, "idp.user.create") if e.outcome == Outcome.APPLIED.value
        )
        assert len(creates) == 300 and set(creates.values()) == {1}
        with session_scope(world.database_url) as session:
            assert verify(session=session).ok
    finally:
        await world.idp.aclose()


async def test_policy_groups_missing_in_the_idp_refuse_the_run_with_zero_writes(
    pg_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preflight: `tenure sync --full` and `tenure apply` with a policy group the IdP lacks exit 2 naming it,
    and nothing is written to the IdP."""
    from typer.testing import CliRunner

    from tenure.cli import app
    from tests.contract.test_sync_scim import _cli_env

    world = pg_world
    _cli_env(world, tmp_path, monkeypatch)
    ghostly = POLICY.model_copy(
        update={
            "birthright": [
                *POLICY.birthright,
                *Policy.model_validate(
                    {"birthright": [{"match": {"department": "Sales"}, "groups": ["ghost-group"]}]}
                ).birthright,
            ]
        }
    )
    policy_file = tmp_path / "ghost.yaml"
    policy_file.write_text(ghostly.model_dump_json(), encoding="utf-8")
    monkeypatch.setenv("TENURE_POLICY_FILE", str(policy_file))
    runner = CliRunner()
    for args in (["sync", "--full"], ["apply", world.rows[0]["employee_id"]]):
        result = await asyncio.to_thread(runner.invoke, app, args, catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert "ghost-group" in result.output and "Traceback" not in result.output
    assert await world.accounts() == {}
    assert [e for e in _events(world, "idp.user.create")] == []
