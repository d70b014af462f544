"""The IdentityProvider contract against a real OpenLDAP slapd, plus LDAP-only behaviour."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPInvalidCredentialsResult

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    NetworkError,
    NotFoundError,
    PermanentAPIError,
)
from connectors.idp.ldap import LDAPIdentityProvider, canonical_dn, is_under
from models.domain import Group
from tests.contract.idp_suite import IdentityProviderContract
from tests.support.slapd import SlapdError, SlapdHandle, free_port, start_slapd

pytestmark = pytest.mark.slow


def _entry(slapd: SlapdHandle, search_filter: str, attributes: list[str]) -> tuple[str, dict]:
    """The one entry matching ``search_filter``, read as the root DN (bypassing the connector)."""
    conn = slapd.admin_connection()
    try:
        conn.search(slapd.base_dn, search_filter, ldap3.SUBTREE, attributes=attributes)
        entries = [e for e in conn.response if e.get("type") == "searchResEntry"]
        assert len(entries) == 1, entries
        return entries[0]["dn"], dict(entries[0]["attributes"])
    finally:
        conn.unbind()


def _set_password(slapd: SlapdHandle, dn: str, password: str) -> None:
    conn = slapd.admin_connection()
    try:
        conn.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]})
    finally:
        conn.unbind()


def _bind(slapd: SlapdHandle, dn: str, password: str) -> bool:
    """Whether ``dn`` can bind with ``password`` (a simple bind, RFC 4513 §5.1.3)."""
    server = ldap3.Server(slapd.url, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(server, user=dn, password=password, raise_exceptions=True)
    try:
        conn.bind()
        return True
    except LDAPInvalidCredentialsResult:
        return False
    finally:
        conn.unbind()


def make_ldap_idp(slapd: SlapdHandle, **overrides: Any) -> LDAPIdentityProvider:
    """A connector bound as the slapd's root DN (deletion allowed unless overridden)."""
    options: dict[str, Any] = {
        "bind_dn": slapd.admin_dn,
        "password": slapd.admin_password,
        "base_dn": slapd.base_dn,
        "allow_delete": True,
        "timeout_seconds": 5,
    }
    options.update(overrides)
    return LDAPIdentityProvider(slapd.url, **options)


class TestLDAP(IdentityProviderContract):
    """The shared IdentityProvider contract on slapd (inetOrgPerson users, groupOfNames groups)."""

    @pytest.fixture
    async def idp(self, ldap_idp: LDAPIdentityProvider) -> AsyncIterator[LDAPIdentityProvider]:
        yield ldap_idp

    async def make_group(self, idp: LDAPIdentityProvider, name: str) -> Group:
        return await idp.create_group(name)


class TestLDAPSpecifics:
    """Behaviour only an LDAP directory has: OUs, userPassword, DNs, filters, overlays."""

    async def test_deactivate_moves_to_disabled_ou_and_scrambles_password(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """A leaver's entry moves under ou=disabled and its old password no longer binds."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("mv"))
        dn, _ = _entry(slapd, "(uid=user0.mv@example.com)", ["uid"])
        _set_password(slapd, dn, "correct horse battery staple")
        assert _bind(slapd, dn, "correct horse battery staple")
        await ldap_idp.deactivate_user(account.id)
        moved_dn, attrs = _entry(slapd, "(uid=user0.mv@example.com)", ["userPassword", "entryUUID"])
        assert is_under(moved_dn, slapd.disabled_dn) and not is_under(moved_dn, slapd.people_dn)
        assert attrs["entryUUID"] == [account.id]
        stored = attrs["userPassword"][0]
        stored = stored.decode() if isinstance(stored, bytes) else stored
        assert stored.lower().startswith("{ssha}") and "correct horse" not in stored
        assert not _bind(slapd, moved_dn, "correct horse battery staple")
        await ldap_idp.reactivate_user(account.id)
        back_dn, _ = _entry(slapd, "(uid=user0.mv@example.com)", ["uid"])
        assert canonical_dn(back_dn) == canonical_dn(dn)
        assert not _bind(slapd, back_dn, "correct horse battery staple")  # reactivation does not restore it

    async def test_two_deactivations_scramble_differently(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """Each scramble writes a fresh random hash (no shared or guessable value)."""
        a = await ldap_idp.create_user(IdentityProviderContract.attributes("s1"))
        b = await ldap_idp.create_user(IdentityProviderContract.attributes("s2"))
        await ldap_idp.deactivate_user(a.id)
        await ldap_idp.deactivate_user(b.id)
        _, first = _entry(slapd, "(uid=user0.s1@example.com)", ["userPassword"])
        _, second = _entry(slapd, "(uid=user0.s2@example.com)", ["userPassword"])
        assert first["userPassword"] != second["userPassword"]

    async def test_filter_injection_matches_only_the_literal_user(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """A uid of ``*)(uid=*`` is stored and found literally; wildcard look-ups match nothing."""
        attrs = IdentityProviderContract.attributes
        plain = await ldap_idp.create_user(attrs("inj", 1))
        hostile = await ldap_idp.create_user(
            attrs("inj", 2, user_name="*)(uid=*", employee_id="*)(employeeNumber=*")
        )
        found = await ldap_idp.find_user_by_username("*)(uid=*")
        assert found is not None and found.id == hostile.id and found.user_name == "*)(uid=*"
        by_employee = await ldap_idp.find_user_by_employee_id("*)(employeeNumber=*")
        assert by_employee is not None and by_employee.id == hostile.id
        for probe in ("*", "user1*", "*)(|(uid=*", "\\2a", "user1.inj@example.com)(uid=*"):
            assert await ldap_idp.find_user_by_username(probe) is None, probe
        assert await ldap_idp.find_user_by_employee_id("*") is None
        assert (await ldap_idp.find_user_by_username(plain.user_name)).id == plain.id  # type: ignore[union-attr]
        dn, _ = _entry(slapd, "(uid=\\2a\\29\\28uid=\\2a)", ["uid"])
        assert dn.lower().startswith("uid=") and is_under(dn, slapd.people_dn)

    async def test_empty_group_keeps_hidden_placeholder(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """groupOfNames needs a member: an emptied group holds only its own DN, which is never reported."""
        group = await ldap_idp.create_group("placeholder-test")
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("ph"))
        await ldap_idp.add_member(group.id, account.id)
        dn, attrs = _entry(slapd, "(cn=placeholder-test)", ["member"])
        assert [canonical_dn(m) for m in attrs["member"]] != [canonical_dn(dn)]
        assert canonical_dn(dn) not in {canonical_dn(m) for m in attrs["member"]}
        await ldap_idp.remove_member(group.id, account.id)
        _, attrs = _entry(slapd, "(cn=placeholder-test)", ["member"])
        assert [canonical_dn(m) for m in attrs["member"]] == [canonical_dn(dn)]
        assert await ldap_idp.list_members(group.id) == set()
        assert next(g for g in await ldap_idp.list_groups() if g.id == group.id).member_ids == frozenset()

    async def test_membership_survives_deactivation_move(self, ldap_idp: LDAPIdentityProvider) -> None:
        """After the move to ou=disabled the group still lists the account (refint rewrote the member DN)."""
        group = await ldap_idp.create_group("refint-test")
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("ri"))
        await ldap_idp.add_member(group.id, account.id)
        await ldap_idp.deactivate_user(account.id)
        assert await ldap_idp.list_members(group.id) == {account.id}
        read = await ldap_idp.find_user_by_employee_id(account.employee_id)
        assert read is not None and "refint-test" in read.groups and read.active is False
        await ldap_idp.remove_member(group.id, account.id)
        assert await ldap_idp.list_members(group.id) == set()

    async def test_manager_is_stored_as_dn(self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle) -> None:
        """manager_id becomes the manager entry's DN in ``manager`` and reads back as the employee id."""
        attrs = IdentityProviderContract.attributes
        manager = await ldap_idp.create_user(attrs("mg", 1, user_name='boss,"the"+one'))
        report = await ldap_idp.create_user(attrs("mg", 2, manager_id=manager.employee_id))
        assert report.manager_id == manager.employee_id
        manager_dn, _ = _entry(slapd, "(employeeNumber=E-mg-1)", ["uid"])
        _, stored = _entry(slapd, "(employeeNumber=E-mg-2)", ["manager"])
        assert [canonical_dn(v) for v in stored["manager"]] == [canonical_dn(manager_dn)]
        cleared = await ldap_idp.update_user(report, {"manager_id": None})
        assert cleared.manager_id is None

    async def test_update_leaves_other_attributes_alone(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """An attribute changed directly in the directory survives an update of another attribute."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("oob"))
        dn, _ = _entry(slapd, "(employeeNumber=E-oob-0)", ["uid"])
        conn = slapd.admin_connection()
        conn.modify(dn, {"mail": [(ldap3.MODIFY_REPLACE, ["changed.by.helpdesk@example.com"])]})
        conn.unbind()
        updated = await ldap_idp.update_user(account, {"title": "Principal"})
        assert updated.title == "Principal"
        assert updated.email == "changed.by.helpdesk@example.com"

    async def test_rename_changes_rdn_keeps_id(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """A new user_name renames the entry (uid RDN) and keeps its entryUUID."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("rn"))
        renamed = await ldap_idp.update_user(account, {"user_name": "renamed.rn@example.com"})
        assert renamed.id == account.id and renamed.user_name == "renamed.rn@example.com"
        dn, _ = _entry(slapd, "(employeeNumber=E-rn-0)", ["uid"])
        assert canonical_dn(dn)[0] == (("uid", "renamed.rn@example.com"),)
        assert await ldap_idp.find_user_by_username("user0.rn@example.com") is None

    async def test_user_name_clash_with_other_employee_is_conflict(
        self, ldap_idp: LDAPIdentityProvider
    ) -> None:
        """A second employee wanting a taken uid gets ConflictError, not the first person's account."""
        attrs = IdentityProviderContract.attributes
        await ldap_idp.create_user(attrs("cl", 1, user_name="taken@example.com"))
        with pytest.raises(ConflictError, match="already exists"):
            await ldap_idp.create_user(attrs("cl", 2, user_name="taken@example.com"))

    async def test_last_sign_in_from_auth_timestamp(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """A bind as the user sets authTimestamp (lastbind overlay), read back as last_sign_in."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("lb"))
        assert await ldap_idp.last_sign_in(account.id) is None
        dn, _ = _entry(slapd, "(employeeNumber=E-lb-0)", ["uid"])
        _set_password(slapd, dn, "s3cret-for-bind")
        assert _bind(slapd, dn, "s3cret-for-bind")
        seen = await ldap_idp.last_sign_in(account.id)
        assert seen is not None and abs(seen - datetime.now(UTC)) < timedelta(minutes=2)

    async def test_delete_refused_unless_allowed(self, slapd: SlapdHandle) -> None:
        """With allow_delete false, delete_user raises PermanentAPIError and the entry stays."""
        idp = make_ldap_idp(slapd, allow_delete=False)
        try:
            account = await idp.create_user(IdentityProviderContract.attributes("nodel"))
            with pytest.raises(PermanentAPIError, match="allow_delete|ALLOW_DELETE"):
                await idp.delete_user(account.id)
            assert await idp.find_user_by_employee_id(account.employee_id) is not None
        finally:
            await idp.aclose()
            slapd.clear()

    async def test_unknown_ids_are_not_found(self, ldap_idp: LDAPIdentityProvider) -> None:
        """Operations on an account or group id that does not exist raise NotFoundError."""
        group = await ldap_idp.create_group("notfound-test")
        with pytest.raises(NotFoundError):
            await ldap_idp.deactivate_user("00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFoundError):
            await ldap_idp.add_member(group.id, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFoundError):
            await ldap_idp.list_members("00000000-0000-0000-0000-000000000000")

    async def test_wrong_password_is_authentication_error_without_secret(self, slapd: SlapdHandle) -> None:
        """A bad bind password raises AuthenticationError; the password is in no message or repr."""
        secret = "Wr0ng-Pa55word-XYZ"
        idp = make_ldap_idp(slapd, password=secret)
        with pytest.raises(AuthenticationError) as caught:
            await idp.find_user_by_username("anyone")
        assert secret not in str(caught.value) and secret not in repr(caught.value)
        assert secret not in repr(idp) and secret not in str(vars(idp))

    async def test_connected_connection_repr_has_no_password(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """After binding, neither the connector nor its ldap3 connection repr shows the bind password."""
        await ldap_idp.find_user_by_username("anyone")
        assert ldap_idp._conn is not None
        assert slapd.admin_password not in repr(ldap_idp._conn)
        assert slapd.admin_password not in repr(ldap_idp)

    async def test_unreachable_server_is_network_error(self, slapd: SlapdHandle) -> None:
        """A closed port raises the retryable NetworkError."""
        idp = LDAPIdentityProvider(
            f"ldap://127.0.0.1:{free_port()}",
            bind_dn=slapd.admin_dn,
            password="x",
            base_dn=slapd.base_dn,
            timeout_seconds=2,
        )
        with pytest.raises(NetworkError) as caught:
            await idp.find_user_by_employee_id("E1")
        assert caught.value.retryable

    async def test_iter_users_interleaved_with_writes(self, ldap_idp: LDAPIdentityProvider) -> None:
        """Paging on its own connection is undisturbed by concurrent writes on the shared one."""
        attrs = IdentityProviderContract.attributes
        created = [await ldap_idp.create_user(attrs("il", n)) for n in range(7)]
        seen: list[str] = []
        async for page in ldap_idp.iter_users(page_size=3):
            seen += [a.id for a in page if a.employee_id.startswith("E-il-")]
            await asyncio.gather(
                ldap_idp.update_user(created[0], {"title": f"t{len(seen)}"}),
                ldap_idp.find_user_by_username("nobody"),
            )
        assert sorted(seen) == sorted(a.id for a in created)

    async def test_delete_drops_memberships_first(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """Deleting a sole member leaves no dangling DN a later namesake would inherit."""
        group = await ldap_idp.create_group("dangling-test")
        attrs = IdentityProviderContract.attributes
        leaver = await ldap_idp.create_user(attrs("dg", 1, user_name="same.name@example.com"))
        await ldap_idp.add_member(group.id, leaver.id)
        await ldap_idp.delete_user(leaver.id)
        namesake = await ldap_idp.create_user(attrs("dg", 2, user_name="same.name@example.com"))
        assert await ldap_idp.list_members(group.id) == set()
        assert namesake.groups == frozenset()
        dn, stored = _entry(slapd, "(cn=dangling-test)", ["member"])
        assert [canonical_dn(m) for m in stored["member"]] == [canonical_dn(dn)]


class TestSlapdHelper:
    """The throwaway-slapd helper the LDAP contract and e2e tests rely on."""

    def test_bad_config_raises_with_stderr(self, tmp_path: Path) -> None:
        """A configuration slapadd rejects raises SlapdError carrying its stderr, never a silent skip."""
        with pytest.raises(SlapdError, match="olcSuffix"):
            start_slapd(tmp_path, base_dn="dc=a,,dc=b")

    def test_stop_ends_the_process(self, tmp_path: Path) -> None:
        """stop() ends slapd by PID; a second stop() is harmless."""
        handle = start_slapd(tmp_path)
        os.kill(handle.pid, 0)  # alive
        conn = handle.admin_connection()
        conn.search(handle.base_dn, "(ou=*)", ldap3.LEVEL, attributes=["ou"])
        assert sorted(e["attributes"]["ou"][0] for e in conn.response) == ["disabled", "groups", "people"]
        conn.unbind()
        handle.stop()
        handle.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(handle.pid, 0)


class TestLDAPActiveFlag:
    """``active`` in create and update drives the disabled-OU placement."""

    async def test_create_inactive_lands_in_disabled_ou(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """A joiner created with active=False is placed under ou=disabled with a scrambled password."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("ina", active=False))
        assert account.active is False
        dn, stored = _entry(slapd, "(employeeNumber=E-ina-0)", ["userPassword"])
        assert is_under(dn, slapd.disabled_dn)
        assert stored["userPassword"] and str(stored["userPassword"][0]).lower().find("ssha") >= 0

    async def test_update_active_flag_moves_entry(
        self, ldap_idp: LDAPIdentityProvider, slapd: SlapdHandle
    ) -> None:
        """update_user with active False/True deactivates and reactivates alongside attribute changes."""
        account = await ldap_idp.create_user(IdentityProviderContract.attributes("upa"))
        off = await ldap_idp.update_user(account, {"active": False, "title": "Alumnus"})
        assert off.active is False and off.title == "Alumnus"
        assert is_under(_entry(slapd, "(employeeNumber=E-upa-0)", ["uid"])[0], slapd.disabled_dn)
        on = await ldap_idp.update_user(off, {"active": True})
        assert on.active is True and on.title == "Alumnus"
        assert is_under(_entry(slapd, "(employeeNumber=E-upa-0)", ["uid"])[0], slapd.people_dn)
