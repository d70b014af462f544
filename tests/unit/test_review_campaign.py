"""Review campaigns on SQLite: run (auto-remediation + campaign), decide, deadlines, export, KPIs, CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from connectors.errors import InvalidRecordError, NotFoundError
from engine.applier import Applier
from engine.auditor import Auditor
from engine.kpi import compute_kpis
from engine.locks import Locks
from engine.review import (
    DEADLINE_ACTOR,
    ReviewError,
    collect_inventory,
    decide,
    export_rows,
    load_approvals,
    process_deadlines,
    run_review,
)
from engine.review.campaign import remediate
from lifecycle.policy import Policy
from lifecycle.review import find
from models.audit import AuditEvent, Outcome, verify
from models.db import session_scope
from models.domain import Account, Employee, EmployeeStatus, Group, Ticket, TicketRequest, TicketStatus
from models.ledger import Grant, GrantStatus, aware, upsert_grants
from models.review import DecisionRow, ReviewAssignment, ReviewCampaign, ReviewItem, record_decisions
from tests.support.actions import record_approval, seed_audit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def policy(
    on_deadline: str = "revoke", auto_remediate: tuple[str, ...] | list[str] = ("terminated_active",)
) -> Policy:
    return Policy.model_validate(
        {
            "birthright": [
                {"groups": ["all-staff"]},
                {"match": {"department": "Engineering"}, "groups": ["engineering"]},
                {"match": {"department": "Finance"}, "groups": ["finance"]},
            ],
            "privileged_groups": [{"name": "prod-admin", "recertify_days": 90}],
            "review": {
                "dormant_days": 90,
                "auto_remediate": list(auto_remediate),
                "fallback_reviewer": "it-security",
                "remind_after_days": 3,
                "escalate_after_days": 7,
                "deadline_days": 14,
                "on_deadline": on_deadline,
            },
        }
    )


class FakeHRIS:
    source = "fake-hris"

    def __init__(self, employees: list[Employee]) -> None:
        self.employees = employees

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        for employee in self.employees:
            yield employee
        yield InvalidRecordError("bad row", source=self.source)


class FakeIdP:
    """In-memory identity provider: accounts by id, groups by name with member ids."""

    source = "fake-idp"

    def __init__(self, accounts: list[Account]) -> None:
        self.accounts = {a.id: a for a in accounts}
        self.groups: dict[str, set[str]] = {}
        for account in accounts:
            for group in account.groups:
                self.groups.setdefault(group, set()).add(account.id)
        self.calls: list[tuple[str, str]] = []

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        users = [a.model_copy(update={"groups": frozenset()}) for a in self.accounts.values()]
        for start in range(0, len(users), 2):
            yield users[start : start + 2]

    async def list_groups(self) -> list[Group]:
        return [Group(id=f"g-{name}", name=name, member_ids=frozenset(m)) for name, m in self.groups.items()]

    async def deactivate_user(self, account_id: str) -> None:
        if account_id not in self.accounts:
            raise NotFoundError("no such account", source=self.source)
        self.calls.append(("deactivate", account_id))
        self.accounts[account_id] = self.accounts[account_id].model_copy(update={"active": False})

    async def remove_member(self, group_id: str, account_id: str) -> None:
        self.calls.append(("remove", f"{group_id}:{account_id}"))
        self.groups[group_id.removeprefix("g-")].discard(account_id)

    async def remove_members(self, group_id: str, account_ids: Any) -> dict[str, Any]:
        for account_id in account_ids:
            await self.remove_member(group_id, account_id)
        return {}

    def members(self, name: str) -> set[str]:
        return self.groups.get(name, set())


class FakeTicketing:
    source = "fake-tickets"

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = {}
        self.bodies: dict[str, str] = {}
        self.comments: list[tuple[str, str]] = []
        self.closed: list[str] = []

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        for ticket in self.tickets.values():
            if ticket.reference == request.reference:
                return ticket
        ticket = Ticket(
            id=str(len(self.tickets) + 1),
            reference=request.reference,
            title=request.title,
            status=TicketStatus.OPEN,
        )
        self.tickets[ticket.id] = ticket
        self.bodies[ticket.id] = request.body
        return ticket

    async def add_comment(self, ticket_id: str, text: str) -> None:
        self.comments.append((ticket_id, text))

    async def close_ticket(self, ticket_id: str) -> None:
        self.closed.append(ticket_id)


def emp(eid: str, dept: str = "Engineering", manager: str | None = "M1", **kw: Any) -> Employee:
    return Employee(
        employee_id=eid,
        first_name="A",
        last_name="B",
        department=dept,
        manager_id=manager,
        status=kw.pop("status", EmployeeStatus.ACTIVE),
        hire_date=kw.pop("hire_date", date(2020, 1, 1)),
        **kw,
    )


def acct(eid: str, *groups: str, **kw: Any) -> Account:
    return Account(
        id=f"acc-{eid}", user_name=f"user.{eid.lower()}", employee_id=eid, groups=frozenset(groups), **kw
    )


def seeded() -> tuple[FakeHRIS, FakeIdP]:
    """M1 manages E1 (terminated, still enabled), E2 (finance group outside policy), E4 (old prod-admin);
    O1 is an orphan; E5's manager left."""
    employees = [
        emp("M1", manager=None),
        emp("E1", status=EmployeeStatus.TERMINATED, termination_date=date(2026, 2, 1)),
        emp("E2"),
        emp("E4"),
        emp("ML", manager=None, status=EmployeeStatus.TERMINATED, termination_date=date(2025, 1, 1)),
        emp("E5", manager="ML"),
    ]
    accounts = [
        acct("M1", "all-staff", "engineering"),
        acct("E1", "all-staff", "engineering"),
        acct("E2", "all-staff", "engineering", "finance"),
        acct("E4", "all-staff", "engineering", "prod-admin"),
        acct("O1", "all-staff"),
        acct("ML", active=False),
        acct("E5", "all-staff", "engineering", last_sign_in=NOW - timedelta(days=200)),
    ]
    return FakeHRIS(employees), FakeIdP(accounts)


async def start(url: str, pol: Policy | None = None) -> tuple[Any, FakeIdP, FakeTicketing, Auditor]:
    hris, idp = seeded()
    tickets = FakeTicketing()
    auditor = Auditor(url, actor="test")
    approved_at = datetime.now(UTC)
    await record_approval(url, "E4", "prod-admin", at=approved_at)
    assert "prod-admin" in load_approvals(url)["E4"]
    run = await run_review(
        hris=hris,
        idp=idp,
        ticketing=tickets,
        policy=pol or policy(),
        auditor=auditor,
        now=approved_at + timedelta(days=120),  # the approval is 120 days old
    )
    return run, idp, tickets, auditor


def by_kind(run: Any, kind: str) -> Any:
    return next(f for f in run.findings if f.kind.value == kind)


async def test_run_auto_remediates_and_routes(fresh_sqlite_url: str) -> None:
    """terminated_active is disabled at once; the rest become items for the manager or the fallback."""
    run, idp, tickets, _ = await start(fresh_sqlite_url)
    assert run.counts == {
        "orphan": 1,
        "terminated_active": 1,
        "dormant": 1,
        "outside_policy": 1,
        "sod_conflict": 0,
        "recertification": 1,
        "disputed": 0,
    }
    assert idp.accounts["acc-E1"].active is False and ("deactivate", "acc-E1") in idp.calls
    assert run.invalid_records == 1
    reviewers = {f.kind.value: run.reviewers[f.id] for f in run.findings if f.id in run.reviewers}
    assert reviewers == {
        "outside_policy": "user.m1",
        "recertification": "user.m1",
        "orphan": "it-security",
        "dormant": "it-security",
    }
    refs = sorted(t.reference for t in tickets.tickets.values())
    assert refs == [
        f"tenure:review:{run.campaign_id}:it-security",
        f"tenure:review:{run.campaign_id}:user.m1",
    ]
    m1_body = next(tickets.bodies[t.id] for t in tickets.tickets.values() if t.reference.endswith("user.m1"))
    assert by_kind(run, "outside_policy").id in m1_body and by_kind(run, "orphan").id not in m1_body
    with session_scope(fresh_sqlite_url) as session:
        items = session.exec(select(ReviewItem)).all()
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
        assert verify(session=session).ok
    auto = [i for i in items if i.auto]
    assert [(i.kind, i.decision, i.action_outcome) for i in auto] == [
        ("terminated_active", "revoke", "applied")
    ]
    assert actions.count("review.finding") == 5 and "idp.user.disable" in actions and "review.run" in actions


async def test_decide_revoke_and_keep(database_url: str) -> None:
    """Revoke removes the membership via the Applier; keeping a privileged group re-certifies it."""
    run, idp, tickets, auditor = await start(database_url)
    pol = policy()
    outside, recert = by_kind(run, "outside_policy"), by_kind(run, "recertification")
    common = dict(
        database_url=database_url,
        campaign_id=run.campaign_id,
        idp=idp,
        ticketing=tickets,
        policy=pol,
        auditor=auditor,
        now=NOW,
    )
    item = await decide(item_id=outside.id, decision="revoke", by="m1", reason="not needed", **common)
    assert "acc-E2" not in idp.members("finance")
    assert (item.decision, item.decided_by, item.action_taken, item.action_outcome) == (
        "revoke",
        "m1",
        "remove_membership finance",
        "applied",
    )
    kept = await decide(item_id=recert.id, decision="keep", by="m1", reason="on call", **common)
    assert kept.decision == "keep" and "acc-E4" in idp.members("prod-admin")
    assert load_approvals(database_url)["E4"]["prod-admin"] > NOW - timedelta(days=1)
    again = await decide(item_id=outside.id, decision="revoke", by="m1", **common)  # idempotent
    assert again.action_outcome == "applied"
    with pytest.raises(ReviewError, match="already decided revoke"):
        await decide(item_id=outside.id, decision="keep", by="m1", **common)
    with pytest.raises(ReviewError, match="no item"):
        await decide(item_id="nope", decision="keep", by="m1", **common)
    with session_scope(database_url) as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions.count("review.decision") == 2 and actions.count("review.revoke") == 1
    assert actions.count("idp.membership.remove") == 1 and actions.count("review.recertify") == 1


async def test_rerun_after_keep_has_no_recertification(fresh_sqlite_url: str) -> None:
    """After a keep, the next run no longer asks to re-certify that privileged group."""
    run, idp, tickets, auditor = await start(fresh_sqlite_url)
    await decide(
        database_url=fresh_sqlite_url,
        campaign_id=run.campaign_id,
        item_id=by_kind(run, "recertification").id,
        decision="keep",
        by="m1",
        idp=None,
        ticketing=None,
        policy=policy(),
        auditor=auditor,
    )
    hris, _ = seeded()
    second = await run_review(hris=hris, idp=idp, ticketing=tickets, policy=policy(), auditor=auditor)
    assert second.counts["recertification"] == 0 and second.counts["terminated_active"] == 0


@pytest.mark.parametrize("on_deadline", ["revoke", "keep_and_flag"])
async def test_deadline_remind_escalate_settle(database_url: str, on_deadline: str) -> None:
    """Reminder after 3 days, escalation after 7, and at 14 days undecided items follow on_deadline (their
    decisions and grants recorded as on SQLite, so on PostgreSQL)."""
    run, idp, tickets, auditor = await start(database_url, policy(on_deadline))
    with session_scope(database_url) as session:
        campaign = session.get(ReviewCampaign, run.campaign_id)
        created = campaign.created_at.replace(tzinfo=UTC)
    common = dict(
        database_url=database_url, idp=idp, ticketing=tickets, policy=policy(on_deadline), auditor=auditor
    )
    await decide(
        campaign_id=run.campaign_id,
        item_id=by_kind(run, "outside_policy").id,
        decision="keep",
        by="m1",
        reason="needed",
        now=created,
        **{k: v for k, v in common.items()},
    )
    early = await process_deadlines(now=created + timedelta(days=1), **common)
    assert early.reminded == [] and tickets.comments == []
    reminded = await process_deadlines(now=created + timedelta(days=3, minutes=1), **common)
    assert sorted(r for _, r in reminded.reminded) == ["it-security", "user.m1"]
    assert (await process_deadlines(now=created + timedelta(days=4), **common)).reminded == []  # once
    escalated = await process_deadlines(now=created + timedelta(days=7, minutes=1), **common)
    assert sorted(r for _, r in escalated.escalated) == ["it-security", "user.m1"]
    assert any("Escalation" in text for _, text in tickets.comments)
    settled = await process_deadlines(now=created + timedelta(days=14, minutes=1), **common)
    assert settled.closed == [run.campaign_id] and len(settled.deadline_items) == 3
    rows = {r["kind"]: r for r in export_rows(database_url, run.campaign_id)}
    orphan = rows["orphan"]
    assert orphan["decided_by"] == DEADLINE_ACTOR
    if on_deadline == "revoke":
        assert idp.accounts["acc-O1"].active is False
        assert (orphan["decision"], orphan["action_outcome"], orphan["flagged"]) == (
            "revoke",
            "applied",
            False,
        )
    else:
        assert idp.accounts["acc-O1"].active is True
        assert (orphan["decision"], orphan["action_taken"], orphan["flagged"]) == ("keep", "none", True)
    assert rows["outside_policy"]["decided_by"] == "m1"
    assert rows["recertification"]["decided_by"] == DEADLINE_ACTOR
    with session_scope(database_url) as session:  # the deadline's decisions made their grants, in one batch
        grant = session.get(Grant, ("E4", "prod-admin"))
        assert grant is not None and (grant.source, grant.decided_by) == ("review", DEADLINE_ACTOR)
        assert grant.item_id == by_kind(run, "recertification").id
    if on_deadline == "revoke":
        assert (grant.status, grant.recertify_until) == (GrantStatus.REVOKED, None)
    else:
        assert grant.status == GrantStatus.GRANTED and grant.recertify_until is not None
    assert sorted(tickets.closed) == sorted(t for t in tickets.tickets)
    with pytest.raises(ReviewError, match="closed"):
        await decide(
            campaign_id=run.campaign_id, item_id=by_kind(run, "dormant").id, decision="keep", by="x", **common
        )
    kpis = compute_kpis(database_url=database_url, policy=policy(), now=created + timedelta(days=15))
    assert (kpis.review_items, kpis.review_decided, kpis.review_completion_rate) == (4, 1, 0.25)
    assert (kpis.orphan_accounts, kpis.dormant_accounts, kpis.open_campaigns) == (1, 1, 0)


async def test_failed_revocation_is_retried(fresh_sqlite_url: str) -> None:
    """A revocation the IdP refuses is recorded failed (and audited); deciding again retries it."""
    run, idp, tickets, auditor = await start(fresh_sqlite_url)
    orphan = by_kind(run, "orphan")
    saved = idp.accounts.pop("acc-O1")
    common = dict(
        database_url=fresh_sqlite_url,
        campaign_id=run.campaign_id,
        item_id=orphan.id,
        decision="revoke",
        by="sec",
        idp=idp,
        ticketing=tickets,
        policy=policy(),
        auditor=auditor,
    )
    assert (await decide(**common)).action_outcome == "failed"
    idp.accounts["acc-O1"] = saved
    assert (await decide(**common)).action_outcome == "applied"
    assert idp.accounts["acc-O1"].active is False
    kpis = compute_kpis(database_url=fresh_sqlite_url, policy=policy())
    assert kpis.failed_by_action.get("idp.user.disable") == 1


async def test_kpi_hire_and_termination_lags(fresh_sqlite_url: str) -> None:
    """Time to access and time to disable are measured from HR dates to the applied audit rows."""
    now = datetime.now(UTC)
    hired = emp("J1", hire_date=(now - timedelta(days=5)).date())
    left = emp("L1", termination_date=(now - timedelta(days=3)).date())
    late = emp("J2", hire_date=(now - timedelta(days=2)).date())
    seed_audit(
        fresh_sqlite_url,
        action="idp.user.enable",
        target_system="x",
        employee_id="J1",
        outcome=Outcome.APPLIED,
        details={"target": "j1"},
    )
    seed_audit(
        fresh_sqlite_url,
        action="idp.user.disable",
        target_system="x",
        employee_id="L1",
        outcome=Outcome.APPLIED,
        details={"target": "l1"},
    )
    report = compute_kpis(
        database_url=fresh_sqlite_url,
        policy=policy(),
        now=now,
        employees={e.employee_id: e for e in (hired, left, late)},
    )
    assert report.hire_to_access.count == 1 and report.hire_to_access.waiting == 1
    assert 5 * 24 - 9 <= report.hire_to_access.median_hours <= 6 * 24 - 9  # from 09:00 UTC on the hire day
    assert report.termination_to_disable.count == 1
    assert 2 * 24 < report.termination_to_disable.median_hours <= 3 * 24 + 6  # from 18:00 UTC that day
    assert "hire → working access" in report.markdown()


async def test_time_to_access_counts_from_the_start_of_the_working_day(fresh_sqlite_url: str) -> None:
    """An account enabled at once counts from policy.workday_start (09:00 local) on the hire day, not from
    midnight; the KPI output says where each lag starts."""
    enabled_at = datetime.now(UTC)
    seed_audit(
        fresh_sqlite_url,
        action="idp.user.enable",
        target_system="x",
        employee_id="J1",
        outcome=Outcome.APPLIED,
        details={"target": "j1"},
    )
    hired = emp("J1", hire_date=enabled_at.date())
    report = compute_kpis(
        database_url=fresh_sqlite_url,
        policy=policy(),
        now=enabled_at + timedelta(days=1),
        employees={"J1": hired},
    )
    workday = datetime.combine(enabled_at.date(), datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    expected = (enabled_at - workday).total_seconds() / 3600
    assert report.hire_to_access.count == 1
    assert abs((report.hire_to_access.median_hours or 0) - expected) < 0.05
    markdown = report.markdown()
    assert "from 09:00 local on the hire day" in markdown and "from the termination instant" in markdown


async def test_access_ready_before_the_working_day_counts_at_once_and_once(fresh_sqlite_url: str) -> None:
    """An account ready before 09:00 on the hire day counts as soon as it is ready (a negative lag), before the
    working day has begun, and falls in one window only: the window of its access, not also that of the day."""
    enabled_at = datetime.now(UTC)  # the audit row is written now
    hire_day = enabled_at.date() + timedelta(days=0 if enabled_at.hour < 6 else 1)  # 09:00 is 3 h+ ahead
    workday = datetime.combine(hire_day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
    seed_audit(
        fresh_sqlite_url,
        action="idp.user.enable",
        target_system="x",
        employee_id="J1",
        outcome=Outcome.APPLIED,
        details={"target": "j1"},
    )
    hired = {"J1": emp("J1", hire_date=hire_day)}

    def lag(now: datetime) -> tuple[int, float | None]:
        """Hires counted in the day before ``now``, and their median lag."""
        report = compute_kpis(
            database_url=fresh_sqlite_url, policy=policy(), now=now, employees=hired, window_days=1
        )
        return report.hire_to_access.count, report.hire_to_access.median_hours

    count, hours = lag(enabled_at + timedelta(minutes=1))  # before 09:00: counted already, negative
    assert count == 1 and hours is not None
    assert abs(hours - (enabled_at - workday).total_seconds() / 3600) < 0.05 and hours <= -3
    assert lag(workday + timedelta(hours=23))[0] == 0  # a window holding 09:00 but not the access: not again


async def test_cli_export_csv_and_json(fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tenure review export` writes every item with its evidence as CSV or JSON; unknown campaign: 2."""
    from tenure.cli import app

    run, idp, tickets, auditor = await start(fresh_sqlite_url)
    await decide(
        database_url=fresh_sqlite_url,
        campaign_id=run.campaign_id,
        item_id=by_kind(run, "dormant").id,
        decision="revoke",
        by="sec",
        reason="unused",
        idp=idp,
        ticketing=tickets,
        policy=policy(),
        auditor=auditor,
    )
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    runner = CliRunner()
    result = runner.invoke(app, ["review", "export", run.campaign_id])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 5
    dormant = next(r for r in rows if r["kind"] == "dormant")
    assert (dormant["decision"], dormant["decided_by"], dormant["reason"], dormant["action_taken"]) == (
        "revoke",
        "sec",
        "unused",
        "disable_account user.e5",
    )
    data = json.loads(runner.invoke(app, ["review", "export", run.campaign_id, "--format", "json"]).stdout)
    assert {r["item"] for r in data} == {r["item"] for r in rows}
    assert runner.invoke(app, ["review", "export", "rc-missing"]).exit_code == 2


class CountingIdP(FakeIdP):
    """FakeIdP that counts group listings."""

    def __init__(self, accounts: list[Account]) -> None:
        super().__init__(accounts)
        self.listings = 0

    async def list_groups(self) -> list[Group]:
        self.listings += 1
        return await super().list_groups()


async def test_many_reviewers_each_get_their_ticket_on_their_assignment(database_url: str) -> None:
    """Tickets are applied in batches, one plan per reviewer's share: every reviewer's ticket id is on their
    own assignment, and each ticket is audited under that share (``review:<campaign>:<reviewer>``)."""
    managers = [emp(f"M{i}", manager=None) for i in range(1, 5)]
    reports = [emp(f"E{i}", manager=f"M{i}") for i in range(1, 5)]
    accounts = [acct(e.employee_id, "all-staff", "engineering") for e in managers]
    accounts += [
        acct(e.employee_id, "all-staff", "engineering", "finance") for e in reports
    ]  # outside policy
    tickets = FakeTicketing()
    run = await run_review(
        hris=FakeHRIS(managers + reports),
        idp=FakeIdP(accounts),
        ticketing=tickets,
        policy=policy(),
        auditor=Auditor(database_url, actor="test"),
        now=NOW,
    )
    assert sorted(run.tickets) == ["user.m1", "user.m2", "user.m3", "user.m4"]
    by_reference = {t.reference: t.id for t in tickets.tickets.values()}
    with session_scope(database_url) as session:
        assignments = session.exec(select(ReviewAssignment)).all()
        opened = session.exec(select(AuditEvent).where(AuditEvent.action == "ticket.create")).all()
        assert verify(session=session).ok
    assert {a.reviewer: a.ticket_id for a in assignments} == {
        reviewer: by_reference[f"tenure:review:{run.campaign_id}:{reviewer}"] for reviewer in run.tickets
    }
    assert sorted(e.employee_id for e in opened) == [
        f"review:{run.campaign_id}:{r}" for r in sorted(run.tickets)
    ]


async def test_stored_items_read_back_with_their_types(database_url: str) -> None:
    """Items and assignments are written in the driver's executemany; they read back through the ORM as the
    ORM writes them: aware times, booleans, the policy's decision on auto-remediated items."""
    run, _, _, _ = await start(database_url)
    with session_scope(database_url) as session:
        items = {i.kind: i for i in session.exec(select(ReviewItem)).all()}
        campaign = session.exec(select(ReviewCampaign)).one()
    auto, manual = items["terminated_active"], items["outside_policy"]
    assert auto.auto is True and auto.flagged is False and auto.decision == "revoke"
    assert auto.decided_by == "policy:auto_remediate" and auto.action_outcome == "applied"
    assert auto.action_taken == "disable_account user.e1"
    assert aware(auto.decided_at) == aware(auto.created_at) == aware(campaign.created_at)
    assert manual.auto is False and manual.decision is None and manual.decided_at is None
    assert manual.reviewer == "user.m1" and manual.group == "finance" and manual.target == "directory"
    assert manual.recommendation in {"keep", "revoke", "none"} and manual.evidence
    assert {i.id for i in items.values()} == {f.id for f in run.findings}


async def test_revocations_use_the_inventorys_group_listing(fresh_sqlite_url: str) -> None:
    """A review that auto-revokes memberships reads the groups once: the inventory's listing gives the ids."""
    employees = [emp("M1", manager=None), emp("E1"), emp("E2")]
    accounts = [acct("M1", "all-staff", "engineering")]
    accounts += [acct(e, "all-staff", "engineering", "finance") for e in ("E1", "E2")]
    idp = CountingIdP(accounts)
    pol = policy(auto_remediate=["outside_policy"])
    run = await run_review(
        hris=FakeHRIS(employees),
        idp=idp,
        ticketing=None,
        policy=pol,
        auditor=Auditor(fresh_sqlite_url),
        now=NOW,
    )
    assert sorted(f.account_id for f in run.findings if f.id in run.auto) == ["acc-E1", "acc-E2"]
    assert {r.outcome for r in run.auto.values()} == {Outcome.APPLIED}
    assert idp.members("finance") == set() and idp.listings == 1


async def test_a_locked_employee_fails_only_their_remediation(fresh_sqlite_url: str) -> None:
    """Remediations go in batches; an employee another run holds fails with the lock's reason, the rest of
    the batch is applied, and an employee with two accounts has both disabled (two batches, one lock each)."""
    employees = [
        emp(e, status=EmployeeStatus.TERMINATED, termination_date=date(2026, 2, 1)) for e in ("E1", "E2")
    ]
    second = Account(id="acc-E2b", user_name="user.e2b", employee_id="E2")
    idp = FakeIdP([acct("E1"), acct("E2"), second])
    auditor = Auditor(fresh_sqlite_url, actor="review")
    inventory = await collect_inventory(FakeHRIS(employees), idp)
    findings = find(inventory.employees, inventory.accounts, {}, NOW, policy())
    assert sorted(f.account_id for f in findings) == ["acc-E1", "acc-E2", "acc-E2b"]
    applier = Applier(
        idp=idp, ticketing=None, auditor=auditor, locks=Locks(fresh_sqlite_url, holder="r", timeout=0.2)
    )
    async with Locks(fresh_sqlite_url, holder="another-run").hold("E1"):
        results = await remediate(findings, applier)
    outcome = {f.account_id: results[f.id] for f in findings}
    assert (
        outcome["acc-E1"].outcome is Outcome.FAILED
        and "locked by run another-run" in outcome["acc-E1"].detail
    )
    assert {outcome[a].outcome for a in ("acc-E2", "acc-E2b")} == {Outcome.APPLIED}
    assert idp.accounts["acc-E1"].active is True
    assert not idp.accounts["acc-E2"].active and not idp.accounts["acc-E2b"].active


async def test_decisions_and_grants_in_one_batch_keep_their_order(database_url: str) -> None:
    """record_decisions writes runs of keeps and revokes in the order given (a kept item's action is none, a
    revoked one's is left for its revocation; an unknown item is skipped); upsert_grants replaces the grant
    on an employee and group, the last of a pair winning."""
    run, _, _, _ = await start(database_url)
    first, second, third = (by_kind(run, k).id for k in ("orphan", "dormant", "outside_policy"))
    row = dict(campaign_id=run.campaign_id, decided_at=NOW, reason="r", flagged=False)
    decisions = [
        DecisionRow(item_id=first, decision="keep", decided_by="a", **row),
        DecisionRow(item_id=second, decision="revoke", decided_by="b", **row),
        DecisionRow(item_id="no-such-item", decision="revoke", decided_by="c", **row),
        DecisionRow(item_id=third, decision="revoke", decided_by="d", **row),
        DecisionRow(item_id=third, decision="keep", decided_by="e", **{**row, "flagged": True}),
    ]

    def grant(status: GrantStatus, by: str) -> Grant:
        return Grant(
            employee_id="E2",
            group_name="finance",
            status=status,
            source="review",
            decided_by=by,
            decided_at=NOW,
        )

    with session_scope(database_url) as session:
        record_decisions(session, decisions)
        upsert_grants(
            session=session, grants=[grant(GrantStatus.GRANTED, "a"), grant(GrantStatus.REVOKED, "b")]
        )
        session.commit()
    with session_scope(database_url) as session:
        items = {i.id: i for i in session.exec(select(ReviewItem)).all()}
        stored = session.get(Grant, ("E2", "finance"))
        assert stored is not None and (stored.status, stored.decided_by) == (GrantStatus.REVOKED, "b")
        assert aware(stored.decided_at) == NOW
    assert (items[first].decision, items[first].decided_by, items[first].action_taken) == (
        "keep",
        "a",
        "none",
    )
    assert (items[second].decision, items[second].action_taken) == ("revoke", None)
    assert aware(items[second].decided_at) == NOW
    assert (items[third].decision, items[third].decided_by, items[third].flagged) == ("keep", "e", True)
    assert "no-such-item" not in items
