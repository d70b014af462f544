"""A whole tenure against real peers: scim2-server or OpenLDAP (slapd) as the IdP, Request Tracker 5 for
tickets, a CSV HRIS.

hire → disabled before day one → enabled on the day with birthright groups and a laptop ticket; move → groups
diffed (a manual grant survives); leave → disabled at the termination time, groups removed, equipment ticket;
rehire → the same account re-enabled. Every step is re-run to show the second run writes nothing, and one run
is killed between two actions to show the re-run converges without duplicates.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from engine.auditor import Auditor
from engine.reconcile import reconcile
from lifecycle.policy import load_policy
from models.audit import AuditEvent, Outcome, verify
from models.db import session_scope
from tenure.compose import Connectors, build_identity_provider, open_connectors
from tenure.settings import HRISSettings, IdPSettings, Settings, TicketingSettings
from tests.support.hris_data import COLUMNS
from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER
from tests.support.scim_server import create_group
from tests.support.slapd import SlapdHandle

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "examples" / "policy.yaml")
HIRE = date(2027, 3, 1)
BERLIN_MIDNIGHT = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)  # 2027-03-01 00:00 Europe/Berlin


def _row(**overrides: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id="E1",
        first_name="Zoë",
        last_name="Ångström",
        work_email="",
        department="Engineering",
        title="Engineer",
        location="Berlin",
        employment_type="employee",
        status="pending",
        hire_date=HIRE.isoformat(),
    )
    row.update(overrides)
    return row


def _write(path: Path, *rows: dict[str, str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


async def _idp_settings(kind: str, request: pytest.FixtureRequest) -> IdPSettings:
    """A fresh, empty directory of the given kind holding the policy's groups and a hand-made one."""
    groups = sorted(POLICY.managed_groups | {"manual-grant"})
    if kind == "scim":
        scim = request.getfixturevalue("scim_server")
        base_url = scim.tenant_url()
        for group in groups:
            await create_group(base_url, scim.token, group)
        return IdPSettings(kind="scim", base_url=base_url, token=SecretStr(scim.token))
    slapd: SlapdHandle = request.getfixturevalue("slapd")
    slapd.clear()
    settings = IdPSettings(
        kind="ldap",
        base_url=slapd.url,
        bind_dn=slapd.admin_dn,
        password=SecretStr(slapd.admin_password),
        base_dn=slapd.base_dn,
        allow_delete=True,
    )

    ldap = build_identity_provider(settings)
    try:
        for group in groups:
            await ldap.create_group(group)
    finally:
        await ldap.aclose()
    return settings


@pytest.fixture(params=["scim", "ldap"])
async def setup(
    request: pytest.FixtureRequest,
    rt,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    fresh_sqlite_url: str,
) -> AsyncIterator[tuple[Settings, Path]]:
    hris_csv = tmp_path / "hris.csv"
    settings = Settings(
        database_url=fresh_sqlite_url,
        policy_file=REPO / "examples" / "policy.yaml",
        idp=await _idp_settings(request.param, request),
        hris=HRISSettings(kind="csv", path=hris_csv),
        ticketing=TicketingSettings(
            kind="rt",
            base_url=rt.base_url,
            username=RT_ROOT_USER,
            password=SecretStr(RT_ROOT_PASSWORD),
            queue="General",
        ),
    )
    yield settings, hris_csv


WRITE_METHODS = frozenset(
    {
        "create_user",
        "update_user",
        "deactivate_user",
        "reactivate_user",
        "delete_user",
        "add_member",
        "remove_member",
    }
)


class CountingIdP:
    """Passes every call through to the real connector and counts the protocol's write calls."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.writes = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name not in WRITE_METHODS:
            return attr

        async def counted(*args: object, **kwargs: object) -> object:
            self.writes += 1
            return await attr(*args, **kwargs)

        return counted


@contextlib.asynccontextmanager
async def _counting(settings: Settings) -> AsyncIterator[tuple[Connectors, Callable[[], int]]]:
    """The configured connectors with the IdP's write calls counted, plus the HTTP writes where there is an
    HTTP layer (SCIM; RT for tickets)."""
    async with open_connectors(settings) as real:
        idp = CountingIdP(real.idp)

        def writes() -> int:
            http = [getattr(part, "api", None) for part in (real.idp, real.ticketing)]
            return idp.writes + sum(api.writes for api in http if api is not None)

        yield Connectors(hris=real.hris, idp=idp, ticketing=real.ticketing), writes  # type: ignore[arg-type]


async def _reconcile(settings: Settings, now: datetime, employee_id: str = "E1") -> tuple[object, int]:
    async with _counting(settings) as (connectors, writes):
        report = await reconcile(
            employee_id, connectors=connectors, policy=POLICY, auditor=Auditor(settings.database_url), now=now
        )
        return report, writes()


async def _account(settings: Settings, employee_id: str = "E1"):  # type: ignore[no-untyped-def]
    async with open_connectors(settings) as connectors:
        account = await connectors.idp.find_user_by_employee_id(employee_id)
        groups = {
            g.name for g in await connectors.idp.list_groups() if account and account.id in g.member_ids
        }
        return account, groups


async def _accounts_of(settings: Settings, employee_id: str) -> int:
    """How many accounts in the whole directory carry this employee id (a duplicate would show as 2)."""
    found = 0
    async with open_connectors(settings) as connectors:
        async for page in connectors.idp.iter_users(page_size=50):
            found += sum(1 for account in page if account.employee_id == employee_id)
    return found


async def _tickets(settings: Settings, reference: str) -> int:
    """How many RT tickets carry this reference (counted in RT itself, not through the connector)."""
    from connectors.ticketing.rt import reference_query

    assert settings.ticketing.password is not None
    auth = (settings.ticketing.username or "", settings.ticketing.password.get_secret_value())
    async with httpx.AsyncClient(auth=auth) as client:
        response = await client.get(
            f"{settings.ticketing.base_url}REST/2.0/tickets",
            params={"query": reference_query(reference), "per_page": 100},
        )
    response.raise_for_status()
    return int(response.json()["total"])


def _audit(settings: Settings, employee_id: str, action: str) -> list[AuditEvent]:
    with session_scope(settings.database_url) as session:
        return list(
            session.exec(
                select(AuditEvent).where(
                    AuditEvent.employee_id == employee_id,
                    AuditEvent.action == action,
                    AuditEvent.outcome == Outcome.APPLIED.value,
                )
            ).all()
        )


async def test_joiner_mover_leaver_rehire(setup: tuple[Settings, Path]) -> None:
    """The whole tenure, each step idempotent, against scim2-server or OpenLDAP and Request Tracker 5."""
    settings, hris_csv = setup
    everyone = {"all-staff", "engineering", "github-users", "office-berlin"}

    # Hire: three days before day one the account exists, disabled.
    _write(hris_csv, _row())
    report, _ = await _reconcile(settings, HIRE_MINUS(3))
    assert report.ok, report.markdown()
    account, _ = await _account(settings)
    assert account is not None and account.active is False
    assert account.user_name == "zoe.angstrom"

    # Day one: enabled, with birthright groups and a laptop ticket.
    _write(hris_csv, _row(status="active"))
    report, _ = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(hours=1))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.active is True and groups == everyone
    assert await _tickets(settings, "tenure:E1:laptop:2027-03-01") == 1

    # The same run again changes nothing: zero writes.
    report, writes = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(hours=2))
    assert writes == 0 and report.ok, report.markdown()

    # A manual grant outside policy survives the move.
    async with open_connectors(settings) as connectors:
        manual = next(g for g in await connectors.idp.list_groups() if g.name == "manual-grant")
        await connectors.idp.add_member(manual.id, account.id)

    # Move to Sales: engineering groups removed, sales groups added, title updated.
    _write(hris_csv, _row(status="active", department="Sales", title="Account Executive"))
    report, _ = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(days=30))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert groups == {"all-staff", "sales", "crm-users", "office-berlin", "manual-grant"}
    assert account.department == "Sales" and account.title == "Account Executive"
    _, writes = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(days=30, hours=1))
    assert writes == 0

    # Leave: before 18:00 Berlin on the last day the account stays enabled; after it, disabled.
    last_day = date(2027, 6, 30)
    _write(
        hris_csv,
        _row(
            status="terminated",
            department="Sales",
            title="Account Executive",
            termination_date=last_day.isoformat(),
        ),
    )
    report, _ = await _reconcile(settings, datetime(2027, 6, 30, 15, 0, tzinfo=UTC))  # 17:00 Berlin
    account, _ = await _account(settings)
    assert account.active is True, report.markdown()
    report, _ = await _reconcile(settings, datetime(2027, 6, 30, 16, 30, tzinfo=UTC))  # 18:30 Berlin
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.active is False
    assert groups == {"manual-grant"}  # managed groups removed, the manual grant is not Tenure's to remove
    assert await _tickets(settings, "tenure:E1:equipment-return:2027-06-30") == 1
    _, writes = await _reconcile(settings, datetime(2027, 6, 30, 17, 0, tzinfo=UTC))
    assert writes == 0

    # Rehire: the same account is enabled again; never a second one. The HRIS cleared the termination date:
    # the ledger's record that Tenure disabled this account as a leaver is the evidence of a rehire, which
    # re-emits the joiner tickets for the new occasion.
    first_id = account.id
    _write(
        hris_csv, _row(status="active", department="Sales", title="Account Executive", hire_date="2027-09-01")
    )
    report, _ = await _reconcile(settings, datetime(2027, 9, 1, 8, 0, tzinfo=UTC))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.id == first_id and account.active is True
    assert {"all-staff", "sales", "crm-users"} <= groups
    assert await _accounts_of(settings, "E1") == 1
    assert len(_audit(settings, "E1", "idp.user.create")) == 1
    assert await _tickets(settings, "tenure:E1:laptop:2027-09-01") == 1  # a new occasion: a new laptop ticket
    assert await _tickets(settings, "tenure:E1:laptop:2027-03-01") == 1  # the first tenure's ticket untouched
    with session_scope(settings.database_url) as session:
        assert verify(session=session).ok


def HIRE_MINUS(days: int) -> datetime:  # noqa: N802 - reads like the timeline it stands for
    return BERLIN_MIDNIGHT - timedelta(days=days)


CRASHING_APPLY = textwrap.dedent(
    """
    import os, sys
    import engine.applier as apply
    original = apply.Applier.apply_action
    calls = {"n": 0}
    async def crash_after(self, action, account):
        result = await original(self, action, account)
        calls["n"] += 1
        if calls["n"] == int(os.environ["CRASH_AFTER"]):
            os._exit(137)  # the process dies between two actions: no cleanup, no audit flush
        return result
    apply.Applier.apply_action = crash_after
    from tenure.cli import main
    sys.argv = ["tenure", "apply", sys.argv[1]]
    main()
    """
)


def _env(settings: Settings) -> dict[str, str]:
    assert settings.ticketing.password
    idp = settings.idp
    secret = idp.token or idp.password
    assert secret is not None
    env = {
        **os.environ,
        "TENURE_DATABASE_URL": settings.database_url,
        "TENURE_POLICY_FILE": str(settings.policy_file),
        "TENURE_ADOPT_BEFORE": "2000-01-01",  # these hires (2020, 2021) are joiners here, not adopted staff
        "TENURE_IDP__KIND": idp.kind,
        "TENURE_IDP__BASE_URL": idp.base_url,
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(settings.hris.path),
        "TENURE_TICKETING__KIND": "rt",
        "TENURE_TICKETING__BASE_URL": settings.ticketing.base_url or "",
        "TENURE_TICKETING__USERNAME": settings.ticketing.username or "",
        "TENURE_TICKETING__PASSWORD": settings.ticketing.password.get_secret_value(),
    }
    if idp.kind == "scim":
        env["TENURE_IDP__TOKEN"] = secret.get_secret_value()
    else:
        env.update(
            TENURE_IDP__BIND_DN=idp.bind_dn or "",
            TENURE_IDP__PASSWORD=secret.get_secret_value(),
            TENURE_IDP__BASE_DN=idp.base_dn or "",
        )
    return env


@pytest.mark.parametrize("crash_after", [1, 3])
async def test_killed_between_actions_then_rerun_converges(
    setup: tuple[Settings, Path], crash_after: int
) -> None:
    """A process killed between two actions leaves a half-done joiner; the re-run finishes it without
    duplicates, and every applied change has exactly one audit row."""
    settings, hris_csv = setup
    _write(
        hris_csv,
        _row(
            employee_id="E2", first_name="Kai", last_name="Nakamura", status="active", hire_date="2020-01-06"
        ),
    )
    env = _env(settings)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_APPLY, "E2"],
        env={**env, "CRASH_AFTER": str(crash_after)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    rerun = subprocess.run(
        [sys.executable, "-m", "tenure.cli", "apply", "E2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    account, groups = await _account(settings, "E2")
    assert account is not None and account.active is True
    assert groups == {"all-staff", "engineering", "github-users", "office-berlin"}
    assert await _accounts_of(settings, "E2") == 1
    assert await _tickets(settings, "tenure:E2:laptop:2020-01-06") == 1
    assert len(_audit(settings, "E2", "idp.user.create")) == 1
    for group in groups:
        adds = [
            e for e in _audit(settings, "E2", "idp.membership.add") if e.target_id and group in str(e.details)
        ]
        assert len(adds) == 1, group
    # A third run writes nothing.
    _, writes = await _reconcile(settings, datetime.now(UTC), "E2")
    assert writes == 0
    with session_scope(settings.database_url) as session:
        assert verify(session=session).ok


async def test_plan_and_dry_run_change_nothing(setup: tuple[Settings, Path]) -> None:
    """`tenure plan --json` prints the plan and writes nothing; `tenure apply --dry-run` audits it as planned
    and changes nothing in the IdP or RT; the real apply then does exactly what was planned."""
    import json

    settings, hris_csv = setup
    emp = f"E3-{settings.idp.kind}"  # RT is shared by the module: one employee per directory kind
    _write(
        hris_csv,
        _row(employee_id=emp, first_name="Mae", last_name="Jemison", status="active", hire_date="2021-06-01"),
    )
    env = _env(settings)
    planned = subprocess.run(
        [sys.executable, "-m", "tenure.cli", "plan", emp, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    kinds = [a["kind"] for a in plan["actions"]]
    assert plan["event"] == "joiner" and kinds[0] == "create_account" and "open_ticket" in kinds
    with session_scope(settings.database_url) as session:
        assert session.exec(select(AuditEvent)).first() is None  # plan writes nothing

    dry = subprocess.run(
        [sys.executable, "-m", "tenure.cli", "apply", emp, "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert dry.returncode == 0, dry.stderr
    with session_scope(settings.database_url) as session:
        rows = session.exec(select(AuditEvent)).all()
    assert len(rows) == len(kinds) and {r.outcome for r in rows} == {Outcome.PLANNED.value}
    assert await _accounts_of(settings, emp) == 0
    assert await _tickets(settings, f"tenure:{emp}:laptop:2021-06-01") == 0

    applied = subprocess.run(
        [sys.executable, "-m", "tenure.cli", "apply", emp],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(_audit(settings, emp, "idp.membership.add")) == kinds.count("add_membership")
    assert await _accounts_of(settings, emp) == 1
    assert await _tickets(settings, f"tenure:{emp}:laptop:2021-06-01") == 1
