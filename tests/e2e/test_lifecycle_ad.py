"""A whole tenure on a real Samba Active Directory DC (``ad_uac``), driven by ``engine.reconcile.reconcile``
with the real CSV HRIS, as ``test_lifecycle_real_peers`` does for scim2-server and OpenLDAP.

hire → the account exists disabled (userAccountControl 514) before day one → enabled (512) on the day with
its birthright groups → move (groups diffed, a manual grant survives) → leave (514 again, managed groups
removed, the leaver's own bind refused with ``data 533``) → rehire (the same objectGUID enabled again).
Every step is re-run and the re-run writes nothing. Tenure binds as the DC's delegated service account;
ticket actions are only audited here (``ticketing.kind=none``): RT is covered by the other lifecycle test.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPInvalidCredentialsResult
from pydantic import SecretStr

from connectors.idp.ldap_layout import ad_password_value
from engine.auditor import Auditor
from engine.reconcile import reconcile
from lifecycle.policy import load_policy
from models.audit import verify
from models.db import session_scope
from tenure.compose import Connectors, build_identity_provider, open_connectors
from tenure.settings import HRISSettings, IdPSettings, Settings, TicketingSettings
from tests.support.hris_data import COLUMNS
from tests.support.samba_dc import SambaDC

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "examples" / "policy.yaml")
HIRE = date(2027, 3, 1)
BERLIN_MIDNIGHT = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)  # 2027-03-01 00:00 Europe/Berlin
PASSWORD = "Zo3-only-in-this-test!"
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


def _row(**overrides: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id="E1",
        first_name="Zoë",
        last_name="Ångström",
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


class CountingIdP:
    """Passes every call through to the real connector and records the protocol's write calls."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name not in WRITE_METHODS:
            return attr

        async def counted(*args: object, **kwargs: object) -> object:
            self.writes.append(name)
            return await attr(*args, **kwargs)

        return counted


@pytest.fixture
def dc(samba_dc: SambaDC) -> Iterator[SambaDC]:
    samba_dc.clear()
    try:
        yield samba_dc
    finally:
        samba_dc.clear()


@pytest.fixture
async def settings(dc: SambaDC, tmp_path: Path, fresh_sqlite_url: str) -> AsyncIterator[Settings]:
    """Tenure configured for the DC the way the README says: LDAPS, the service account, ``ad_uac``, user
    names as sAMAccountName; the policy's groups (and a hand-made one) made by the Administrator."""
    idp = IdPSettings(
        kind="ldap",
        base_url=dc.url,
        bind_dn=dc.service_dn,
        password=SecretStr(dc.service_password),
        base_dn=dc.base_dn,
        users_ou="OU=people",
        groups_ou="OU=groups",
        deactivation_method="ad_uac",
        user_name_attribute="sAMAccountName",
        verify_tls=False,  # the throwaway DC's certificate is self-signed
    )
    admin = build_identity_provider(
        idp.model_copy(update={"bind_dn": dc.admin_dn, "password": SecretStr(dc.admin_password)})
    )
    try:
        for group in sorted(POLICY.managed_groups | {"manual-grant"}):
            await admin.create_group(group)  # type: ignore[attr-defined]
    finally:
        await admin.aclose()
    yield Settings(
        database_url=fresh_sqlite_url,
        policy_file=REPO / "examples" / "policy.yaml",
        idp=idp,
        hris=HRISSettings(kind="csv", path=tmp_path / "hris.csv"),
        ticketing=TicketingSettings(kind="none"),
    )


async def _reconcile(settings: Settings, now: datetime) -> tuple[Any, list[str]]:
    """The reconcile report and the IdP write calls it made, by method name."""
    async with open_connectors(settings) as real:
        idp = CountingIdP(real.idp)
        connectors = Connectors(hris=real.hris, idp=idp, ticketing=real.ticketing)  # type: ignore[arg-type]
        report = await reconcile(
            "E1", connectors=connectors, policy=POLICY, auditor=Auditor(settings.database_url), now=now
        )
        return report, idp.writes


async def _account(settings: Settings) -> tuple[Any, set[str]]:
    async with open_connectors(settings) as connectors:
        account = await connectors.idp.find_user_by_employee_id("E1")
        groups = {
            g.name for g in await connectors.idp.list_groups() if account and account.id in g.member_ids
        }
        return account, groups


def _stored(dc: SambaDC) -> dict[str, list[str]]:
    """E1's entry as the DC holds it, read as Administrator."""
    conn = dc.admin_connection()
    try:
        conn.search(
            dc.people_dn,
            "(employeeID=E1)",
            ldap3.SUBTREE,
            attributes=[
                "userAccountControl",
                "sAMAccountName",
                "userPrincipalName",
                "memberOf",
                "department",
            ],
        )
        entries = [e for e in conn.response if e.get("type") == "searchResEntry"]
        assert len(entries) == 1, entries
        return {"dn": [entries[0]["dn"]], **dict(entries[0]["attributes"])}
    finally:
        conn.unbind()


def _can_bind(dc: SambaDC, user: str) -> str | None:
    """None when E1 can bind with the password the test gave them, else the DC's diagnostic."""
    try:
        dc.connection(user, PASSWORD).unbind()
    except LDAPInvalidCredentialsResult as exc:
        return str(exc.message)
    return None


def _managed(dns: list[str]) -> set[str]:
    return {dn.split(",", 1)[0].split("=", 1)[1] for dn in dns}


async def test_joiner_mover_leaver_rehire_on_active_directory(settings: Settings, dc: SambaDC) -> None:
    """The whole tenure on a real AD DC, each step idempotent (a re-run makes zero writes)."""
    hris_csv = settings.hris.path
    everyone = {"all-staff", "engineering", "github-users", "office-berlin"}
    upn = f"zoe.angstrom@{dc.upn_suffix}"

    # Hire: three days before day one the account exists, disabled (514), with a password nobody knows.
    _write(hris_csv, _row())
    report, writes = await _reconcile(settings, BERLIN_MIDNIGHT - timedelta(days=3))
    assert report.ok and writes, report.markdown()
    account, groups = await _account(settings)
    assert account is not None and account.active is False and account.user_name == "zoe.angstrom"
    stored = _stored(dc)
    assert stored["userAccountControl"] == ["514"]
    assert stored["sAMAccountName"] == ["zoe.angstrom"] and stored["userPrincipalName"] == [upn]
    _, writes = await _reconcile(settings, BERLIN_MIDNIGHT - timedelta(days=3, hours=-1))
    assert writes == []

    # Day one: enabled (512) with the birthright groups; E1 can sign in (the helpdesk gave a password).
    _write(hris_csv, _row(status="active"))
    report, _ = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(hours=1))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.active is True and groups == everyone
    stored = _stored(dc)
    assert stored["userAccountControl"] == ["512"] and _managed(stored["memberOf"]) == everyone
    conn = dc.admin_connection()
    try:
        conn.modify(stored["dn"][0], {"unicodePwd": [(ldap3.MODIFY_REPLACE, [ad_password_value(PASSWORD)])]})
    finally:
        conn.unbind()
    assert _can_bind(dc, upn) is None
    report, writes = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(hours=2))
    assert writes == [] and report.ok, report.markdown()

    # A manual grant outside policy survives the move.
    async with open_connectors(settings) as connectors:
        manual = next(g for g in await connectors.idp.list_groups() if g.name == "manual-grant")
        await connectors.idp.add_member(manual.id, account.id)

    # Move to Sales: engineering groups removed, sales groups added, department and title updated.
    _write(hris_csv, _row(status="active", department="Sales", title="Account Executive"))
    report, _ = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(days=30))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert groups == {"all-staff", "sales", "crm-users", "office-berlin", "manual-grant"}
    assert account.department == "Sales" and account.title == "Account Executive"
    assert _stored(dc)["department"] == ["Sales"]
    _, writes = await _reconcile(settings, BERLIN_MIDNIGHT + timedelta(days=30, hours=1))
    assert writes == []

    # Leave: enabled until 18:00 Berlin on the last day; after it disabled, managed groups removed, and
    # E1's own bind is refused the way Windows AD refuses a disabled account (data 533).
    leaver = _row(
        status="terminated", department="Sales", title="Account Executive", termination_date="2027-06-30"
    )
    _write(hris_csv, leaver)
    report, _ = await _reconcile(settings, datetime(2027, 6, 30, 15, 0, tzinfo=UTC))  # 17:00 Berlin
    account, _ = await _account(settings)
    assert account.active is True, report.markdown()
    report, _ = await _reconcile(settings, datetime(2027, 6, 30, 16, 30, tzinfo=UTC))  # 18:30 Berlin
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.active is False and groups == {"manual-grant"}
    stored = _stored(dc)
    assert stored["userAccountControl"] == ["514"] and _managed(stored["memberOf"]) == {"manual-grant"}
    refusal = _can_bind(dc, upn)
    assert refusal is not None and "data 533" in refusal
    _, writes = await _reconcile(settings, datetime(2027, 6, 30, 17, 0, tzinfo=UTC))
    assert writes == []

    # Rehire: the same account (same objectGUID) is enabled again; never a second one.
    first_id = account.id
    _write(
        hris_csv, _row(status="active", department="Sales", title="Account Executive", hire_date="2027-09-01")
    )
    report, _ = await _reconcile(settings, datetime(2027, 9, 1, 8, 0, tzinfo=UTC))
    assert report.ok, report.markdown()
    account, groups = await _account(settings)
    assert account.id == first_id and account.active is True
    assert {"all-staff", "sales", "crm-users"} <= groups
    assert _stored(dc)["userAccountControl"] == ["512"] and _can_bind(dc, upn) is None
    async with open_connectors(settings) as connectors:
        mine = [
            a async for page in connectors.idp.iter_users(page_size=50) for a in page if a.employee_id == "E1"
        ]
    assert [a.id for a in mine] == [first_id]
    _, writes = await _reconcile(settings, datetime(2027, 9, 1, 9, 0, tzinfo=UTC))
    assert writes == []
    with session_scope(settings.database_url) as session:
        assert verify(session=session).ok
