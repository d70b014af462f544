"""The IdentityProvider contract against a real Samba Active Directory DC (``deactivation_method="ad_uac"``),
plus what only Active Directory does: LDAPS-only simple binds, accounts created disabled (514) with a
``unicodePwd`` and enabled (512), ``objectGUID`` ids, ``sAMAccountName``/``userPrincipalName``, linked
``member`` values, and a disabled account's own bind refused with ``data 533``.

The connector binds as the DC's ``svc-tenure`` service account, which holds only the rights the README
lists (tests/support/samba_dc.py delegates them); groups are made by the domain Administrator, as in a real
domain where Tenure fills groups but does not create them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPInvalidCredentialsResult, LDAPStrongerAuthRequiredResult

from connectors.errors import AuthenticationError, ConflictError, InvalidRecordError, NotFoundError
from connectors.idp.ldap import LDAPIdentityProvider
from connectors.idp.ldap_layout import ad_password_value
from models.domain import Group
from tests.contract.idp_suite import IdentityProviderContract
from tests.support.samba_dc import SambaDC, SambaDCUnavailable, skip_or_fail, start_samba_dc

pytestmark = pytest.mark.slow

KNOWN_PASSWORD = "Kn0wn-only-to-this-test!"


def make_ad_idp(
    dc: SambaDC, *, admin: bool = False, url: str | None = None, **overrides: Any
) -> LDAPIdentityProvider:
    """A connector on the DC over LDAPS (self-signed certificate: not validated), as the service account."""
    options: dict[str, Any] = {
        "bind_dn": dc.admin_dn if admin else dc.service_dn,
        "password": dc.admin_password if admin else dc.service_password,
        "base_dn": dc.base_dn,
        "users_ou": "ou=people",
        "groups_ou": "ou=groups",
        "deactivation_method": "ad_uac",
        "allow_delete": True,
        "timeout_seconds": 10,
        "verify_tls": False,
    }
    options.update(overrides)
    return LDAPIdentityProvider(url or dc.url, **options)


@pytest.fixture
def dc(samba_dc: SambaDC) -> Iterator[SambaDC]:
    """The session's DC, its people and groups OUs emptied after each test."""
    try:
        yield samba_dc
    finally:
        samba_dc.clear()


@pytest.fixture
async def ad_idp(dc: SambaDC) -> AsyncIterator[LDAPIdentityProvider]:
    idp = make_ad_idp(dc)
    try:
        yield idp
    finally:
        await idp.aclose()


def _entry(
    dc: SambaDC, search_filter: str, attributes: list[str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The one user or group below the base DN matching ``search_filter``, read as Administrator:
    (DN, attributes, raw attributes)."""
    conn = dc.admin_connection()
    try:
        conn.search(dc.base_dn, search_filter, ldap3.SUBTREE, attributes=attributes)
        entries = [e for e in conn.response if e.get("type") == "searchResEntry"]
        assert len(entries) == 1, entries
        return entries[0]["dn"], dict(entries[0]["attributes"]), dict(entries[0]["raw_attributes"])
    finally:
        conn.unbind()


def _set_password(dc: SambaDC, dn: str, password: str) -> None:
    conn = dc.admin_connection()
    try:
        conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [ad_password_value(password)])]})
    finally:
        conn.unbind()


def _bind_refusal(dc: SambaDC, user: str, password: str) -> str | None:
    """None when ``user`` (a DN or a UPN) can bind with ``password``, else the server's diagnostic."""
    try:
        dc.connection(user, password).unbind()
    except LDAPInvalidCredentialsResult as exc:
        return str(exc.message)
    return None


class TestActiveDirectoryContract(IdentityProviderContract):
    """The shared contract on a real Samba AD DC with ``ad_uac``, keyed by userPrincipalName."""

    @pytest.fixture
    async def idp(self, ad_idp: LDAPIdentityProvider) -> AsyncIterator[LDAPIdentityProvider]:
        yield ad_idp

    async def make_group(self, idp: Any, name: str) -> Group:
        admin = make_ad_idp(self._dc, admin=True)
        try:
            return await admin.create_group(name)
        finally:
            await admin.aclose()

    @pytest.fixture(autouse=True)
    def _remember_dc(self, dc: SambaDC) -> None:
        self._dc = dc


class TestActiveDirectoryOnly:
    """What real AD does that the contract does not say."""

    def test_plain_simple_bind_is_refused(self, dc: SambaDC) -> None:
        """On 389 without TLS Samba refuses a simple bind (strongerAuthRequired): LDAPS it is."""
        with pytest.raises(LDAPStrongerAuthRequiredResult):
            dc.connection(dc.service_dn, dc.service_password, url=dc.plain_url)

    async def test_plain_url_is_an_authentication_error(self, dc: SambaDC) -> None:
        """The connector pointed at ldap:// says it cannot authenticate, and names no password."""
        idp = make_ad_idp(dc, url=dc.plain_url)  # same DC, plain port
        with pytest.raises(AuthenticationError) as caught:
            await idp.find_user_by_username("anyone@tenure.test")
        await idp.aclose()
        assert dc.service_password not in str(caught.value)

    async def test_joiner_created_disabled_with_password_then_enabled(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """A pre-hire is a ``user`` with userAccountControl 514 and a password set; enabling writes 512."""
        attrs = IdentityProviderContract.attributes("pre", active=False)
        account = await ad_idp.create_user(attrs)
        assert account.active is False
        dn, stored, _ = _entry(
            dc,
            "(employeeID=E-pre-0)",
            ["userAccountControl", "pwdLastSet", "objectClass", "sAMAccountName", "userPrincipalName"],
        )
        assert stored["userAccountControl"] == ["514"]
        assert int(stored["pwdLastSet"][0]) > 0  # a password was set (FILETIME of the set)
        assert "user" in stored["objectClass"] and dn.lower().startswith("cn=")
        assert stored["userPrincipalName"] == [attrs.user_name] and stored["sAMAccountName"] == ["user0.pre"]
        enabled = await ad_idp.update_user(account, {"active": True})
        assert enabled.active is True
        assert _entry(dc, "(employeeID=E-pre-0)", ["userAccountControl"])[1]["userAccountControl"] == ["512"]

    async def test_disabled_account_cannot_bind_data_533(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """A leaver's own bind fails as on Windows AD (49, ``data 533``); re-enabled, it works again, and the
        bind shows as the last sign-in."""
        account = await ad_idp.create_user(IdentityProviderContract.attributes("bind"))
        dn, _, _ = _entry(dc, "(employeeID=E-bind-0)", ["cn"])
        _set_password(dc, dn, KNOWN_PASSWORD)
        assert _bind_refusal(dc, account.user_name, KNOWN_PASSWORD) is None
        seen = await ad_idp.last_sign_in(account.id)
        assert seen is not None
        await ad_idp.deactivate_user(account.id)
        refusal = _bind_refusal(dc, account.user_name, KNOWN_PASSWORD)
        assert refusal is not None and "data 533" in refusal
        assert (await ad_idp.find_user_by_employee_id(account.employee_id)).active is False  # type: ignore[union-attr]
        await ad_idp.reactivate_user(account.id)
        assert _bind_refusal(dc, dn, KNOWN_PASSWORD) is None

    async def test_id_is_the_object_guid(self, ad_idp: LDAPIdentityProvider, dc: SambaDC) -> None:
        """The account id is objectGUID in AD's string form; the DC finds the entry by ``<GUID=…>``; a rename
        changes the DN and UPN but not the id."""
        account = await ad_idp.create_user(IdentityProviderContract.attributes("guid"))
        _, _, raw = _entry(dc, "(employeeID=E-guid-0)", ["objectGUID"])
        assert account.id == str(uuid.UUID(bytes_le=raw["objectGUID"][0]))
        conn = dc.admin_connection()
        try:
            conn.search(f"<GUID={account.id}>", "(objectClass=user)", ldap3.BASE, attributes=["employeeID"])
            assert conn.response[0]["attributes"]["employeeID"] == ["E-guid-0"]
        finally:
            conn.unbind()
        renamed = await ad_idp.update_user(account, {"user_name": "renamed.guid@example.com"})
        assert renamed.id == account.id and renamed.user_name == "renamed.guid@example.com"
        dn, stored, _ = _entry(dc, "(employeeID=E-guid-0)", ["userPrincipalName", "sAMAccountName"])
        assert dn.lower().startswith("cn=renamed.guid@example.com,")
        assert stored["userPrincipalName"] == ["renamed.guid@example.com"]
        assert stored["sAMAccountName"] == ["user0.guid"]  # meant never to change
        with pytest.raises(NotFoundError):
            await ad_idp.deactivate_user("not-a-guid")

    async def test_membership_is_the_linked_member_attribute(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """add_member writes the user's DN into the group's ``member``; AD computes ``memberOf``; adding and
        removing twice are no errors (AD answers 68 and 53 for them)."""
        admin = make_ad_idp(dc, admin=True)
        try:
            group = await admin.create_group("linked")
        finally:
            await admin.aclose()
        account = await ad_idp.create_user(IdentityProviderContract.attributes("mem"))
        for _ in range(2):
            await ad_idp.add_member(group.id, account.id)
        user_dn, user, _ = _entry(dc, "(employeeID=E-mem-0)", ["memberOf"])
        _, stored, _ = _entry(
            dc, "(&(objectClass=group)(cn=linked))", ["member", "groupType", "sAMAccountName"]
        )
        assert [m.lower() for m in stored["member"]] == [user_dn.lower()]
        assert stored["sAMAccountName"] == ["linked"]
        assert [g.lower() for g in user["memberOf"]] == [f"cn=linked,{dc.groups_dn}".lower()]
        assert (await ad_idp.find_user_by_employee_id("E-mem-0")).groups == {"linked"}  # type: ignore[union-attr]
        for _ in range(2):
            await ad_idp.remove_member(group.id, account.id)
        assert await ad_idp.list_members(group.id) == set()

    async def test_paged_search_crosses_pages(self, ad_idp: LDAPIdentityProvider) -> None:
        """iter_users follows the DC's RFC 2696 cookie over several pages (Samba caps a page at MaxPageSize
        1000; a small page size shows the cookie round trip on a handful of accounts)."""
        tag = IdentityProviderContract.tag()
        created = [await ad_idp.create_user(IdentityProviderContract.attributes(tag, n)) for n in range(7)]
        pages = [page async for page in ad_idp.iter_users(page_size=2)]
        assert len(pages) >= 4 and all(0 < len(page) <= 2 for page in pages)
        assert sorted(a.id for page in pages for a in page) == sorted(a.id for a in created)

    async def test_employee_id_attribute_is_configurable(self, dc: SambaDC) -> None:
        """employeeID by default; ``employee_id_attribute="employeeNumber"`` keys on that one instead."""
        idp = make_ad_idp(dc, employee_id_attribute="employeeNumber")
        try:
            account = await idp.create_user(IdentityProviderContract.attributes("num"))
            _, stored, _ = _entry(dc, "(employeeNumber=E-num-0)", ["employeeID", "employeeNumber"])
            assert stored["employeeNumber"] == ["E-num-0"] and not stored.get("employeeID")
            found = await idp.find_user_by_employee_id("E-num-0")
            assert found is not None and found.id == account.id
        finally:
            await idp.aclose()

    async def test_keyed_by_sam_account_name(self, dc: SambaDC) -> None:
        """``user_name_attribute="sAMAccountName"``: the user name is the pre-Windows 2000 logon name, the UPN
        ``<name>@<realm>``; a name AD would refuse fails that record only, before any write."""
        idp = make_ad_idp(dc, user_name_attribute="sAMAccountName")
        try:
            account = await idp.create_user(IdentityProviderContract.attributes("sam", user_name="ada.l"))
            assert account.user_name == "ada.l"
            _, stored, _ = _entry(dc, "(employeeID=E-sam-0)", ["sAMAccountName", "userPrincipalName"])
            assert stored == {"sAMAccountName": ["ada.l"], "userPrincipalName": [f"ada.l@{dc.upn_suffix}"]}
            assert (await idp.find_user_by_username("ada.l")).id == account.id  # type: ignore[union-attr]
            assert _bind_refusal(dc, f"ada.l@{dc.upn_suffix}", "wrong") is not None
            for bad in ('o"brien', "a" * 21, "pc$"):
                with pytest.raises(InvalidRecordError, match="sAMAccountName"):
                    await idp.create_user(IdentityProviderContract.attributes("sam", 1, user_name=bad))
            renamed = await idp.update_user(account, {"user_name": "ada.b"})
            assert renamed.user_name == "ada.b" and renamed.id == account.id
            _, stored, _ = _entry(dc, "(employeeID=E-sam-0)", ["sAMAccountName", "userPrincipalName"])
            assert stored == {"sAMAccountName": ["ada.b"], "userPrincipalName": [f"ada.b@{dc.upn_suffix}"]}
        finally:
            await idp.aclose()

    async def test_derived_sam_account_names_stay_apart(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """Keyed by UPN, the sAMAccountName is the UPN's local part when valid and free, else a derived one:
        same local part in two domains, or a local part AD would refuse, still gives two accounts."""
        first = await ad_idp.create_user(
            IdentityProviderContract.attributes("dup", 1, user_name="kim@a.example")
        )
        second = await ad_idp.create_user(
            IdentityProviderContract.attributes("dup", 2, user_name="kim@b.example")
        )
        odd = await ad_idp.create_user(
            IdentityProviderContract.attributes("dup", 3, user_name="k[i]m@a.example")
        )
        names = {
            eid: _entry(dc, f"(employeeID={eid})", ["sAMAccountName"])[1]["sAMAccountName"][0]
            for eid in ("E-dup-1", "E-dup-2", "E-dup-3")
        }
        assert names["E-dup-1"] == "kim"
        assert names["E-dup-2"].startswith("kim-") and names["E-dup-3"].startswith("kim-")
        assert len({first.id, second.id, odd.id}) == 3 and len(set(names.values())) == 3

    async def test_user_principal_name_clash_is_conflict(self, ad_idp: LDAPIdentityProvider) -> None:
        """A second employee wanting a UPN someone holds gets ConflictError, not the first person's account."""
        await ad_idp.create_user(
            IdentityProviderContract.attributes("clash", 1, user_name="taken@example.com")
        )
        with pytest.raises(ConflictError, match="already exists"):
            await ad_idp.create_user(
                IdentityProviderContract.attributes("clash", 2, user_name="taken@example.com")
            )

    async def test_service_account_cannot_touch_what_it_was_not_given(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """The delegated bind account fills groups but cannot create them, nor edit accounts outside its OU:
        the contract above passed with only the README's rights."""
        with pytest.raises(AuthenticationError, match="insufficientAccessRights|LDAP result 50"):
            await ad_idp.create_group("not-mine")
        conn = dc.connection(dc.service_dn, dc.service_password)
        try:
            with pytest.raises(ldap3.core.exceptions.LDAPInsufficientAccessRightsResult):
                conn.modify(dc.admin_dn, {"title": [(ldap3.MODIFY_REPLACE, ["owned"])]})
        finally:
            conn.unbind()

    async def test_hand_made_account_without_employee_id_is_listed_never_matched(
        self, ad_idp: LDAPIdentityProvider, dc: SambaDC
    ) -> None:
        """An account the helpdesk made by hand (no employeeID) is listed with an empty employee id, so the
        access review reports it as an orphan; no look-up by employee id ever returns it."""
        conn = dc.admin_connection()
        try:
            conn.add(
                f"CN=Ada Lovelace,{dc.people_dn}",
                ["top", "person", "organizationalPerson", "user"],
                {"sAMAccountName": "ada.byhand", "displayName": "Ada Lovelace", "userAccountControl": "514"},
            )
        finally:
            conn.unbind()
        tagged = await ad_idp.create_user(
            IdentityProviderContract.attributes("hand", display_name="Ada Lovelace")
        )
        listed = [a async for page in ad_idp.iter_users(page_size=10) for a in page]
        by_hand = [a for a in listed if a.id != tagged.id]
        assert len(listed) == 2 and [a.employee_id for a in by_hand] == [""]
        assert by_hand[0].user_name == "ada.byhand"  # no UPN: the sAMAccountName stands in
        assert await ad_idp.find_user_by_employee_id("") is None
        assert (await ad_idp.find_user_by_employee_id(tagged.employee_id)).id == tagged.id  # type: ignore[union-attr]


class TestSambaDCHelper:
    """The throwaway-DC helper the AD contract and e2e tests rely on."""

    def test_stop_leaves_nothing_running(self, samba_dc: SambaDC, tmp_path: Path) -> None:
        """A second DC beside the session's one (own namespace, own relay ports); stop() ends Samba and the
        relay by PID and removes the namespace; a second stop() is harmless."""
        other = start_samba_dc(tmp_path)
        try:
            assert other.namespace != samba_dc.namespace and other.url != samba_dc.url
            pids = other.pids
            assert len(pids) == 2 and all(os.kill(pid, 0) is None for pid in pids)  # both alive
            assert other.namespace in _namespaces()
            other.connection(other.service_dn, other.service_password).unbind()
        finally:
            other.stop()
        other.stop()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert other.pids == [] and other.namespace not in _namespaces()
        samba_dc.connection(
            samba_dc.service_dn, samba_dc.service_password
        ).unbind()  # the session's one lives

    @pytest.mark.parametrize(
        ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
    )
    def test_unavailable_skips_only_outside_ci(
        self, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
    ) -> None:
        """No root (or no netns, no Samba): a skip on a developer's machine, a failure in CI."""
        monkeypatch.setenv("CI", ci)
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(SambaDCUnavailable, match="root") as caught:
            start_samba_dc(Path("/nonexistent"))
        with pytest.raises(outcome, match="root"):
            skip_or_fail(str(caught.value))


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}
