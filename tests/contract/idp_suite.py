"""The shared contract suite for :class:`connectors.protocols.IdentityProvider`.

Every IdP connector (LDAP, SCIM, Okta, fakes) runs these same tests against its real local peer, so the
flows can rely on one behaviour whatever the vendor.

How to subclass (see ``tests/contract/test_idp_ldap.py``)::

    from tests.contract.idp_suite import IdentityProviderContract

    @pytest.mark.slow
    class TestSCIM(IdentityProviderContract):
        @pytest.fixture
        async def idp(self, scim_server):          # async fixture named ``idp``
            yield SCIMIdentityProvider(...)         # a connector on a fresh (or shared) peer

        async def make_group(self, idp, name):      # the Protocol has no create_group
            ...create the group with the vendor's API, or return it if it already exists...
            return Group(id=..., name=name)

Rules the suite relies on:

* ``idp`` may be per test, per class or per module: tests use unique user names and employee ids
  (a random tag per test), except :meth:`test_hostile_user_name_finds_exactly_that_user`, whose fixed
  names (``o"brien\\x@example.com`` and decoys) need a peer that has not seen this suite before, or one
  the fixture cleans between tests.
* The groups ``engineering``, ``all-staff`` and ``sales`` are obtained through :meth:`group`, which looks
  them up with ``list_groups`` and calls :meth:`make_group` only when missing; tests only assert about
  their own members, so groups may be shared across tests. One test also calls :meth:`make_group` with a
  unique name (``sales-<tag>``) to get a group nobody else touches.
* ``delete_user`` must be allowed by the fixture's connector (test_delete_user).
* The class name does not start with ``Test`` and this module is not a ``test_*.py`` file, so pytest
  collects the tests only through subclasses.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from connectors.errors import ConnectorError
from connectors.protocols import IdentityProvider
from models.domain import Account, AccountAttributes, Group

__all__ = ["GROUP_NAMES", "HOSTILE_USER_NAME", "IdentityProviderContract"]

GROUP_NAMES = ("engineering", "all-staff", "sales")
HOSTILE_USER_NAME = 'o"brien\\x@example.com'


class IdentityProviderContract:
    """Tests every IdentityProvider must pass. Subclasses supply the ``idp`` fixture and ``make_group``."""

    # ------------------------------------------------------------------ hooks and helpers

    async def make_group(self, idp: Any, name: str) -> Group:
        """Create the group ``name`` in the peer (or return it if present). Subclasses must override."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_group()")

    async def group(self, idp: IdentityProvider, name: str) -> Group:
        """The group called ``name``, created through :meth:`make_group` if the peer lacks it."""
        for group in await idp.list_groups():
            if group.name == name:
                return group
        return await self.make_group(idp, name)

    @staticmethod
    def tag() -> str:
        """A short random tag that keeps one test's users apart from another's."""
        return uuid.uuid4().hex[:10]

    @staticmethod
    def attributes(tag: str, n: int = 0, **overrides: Any) -> AccountAttributes:
        """A plausible joiner's attributes, unique per ``tag`` and ``n``."""
        values: dict[str, Any] = {
            "user_name": f"user{n}.{tag}@example.com",
            "employee_id": f"E-{tag}-{n}",
            "given_name": "Ada",
            "family_name": f"Lovelace{n}",
            "display_name": f"Ada Lovelace{n}",
            "email": f"user{n}.{tag}@example.com",
            "title": "Engineer",
            "department": "Engineering",
        }
        values.update(overrides)
        return AccountAttributes(**values)

    # ------------------------------------------------------------------ protocol shape

    async def test_satisfies_protocol(self, idp: IdentityProvider) -> None:
        """The connector structurally satisfies the IdentityProvider protocol and names its source."""
        assert isinstance(idp, IdentityProvider)
        assert isinstance(idp.source, str) and idp.source

    # ------------------------------------------------------------------ users

    async def test_create_then_find_by_employee_id_and_user_name(self, idp: IdentityProvider) -> None:
        """A created account is found by employee id and by user name, with its attributes."""
        wanted = self.attributes(self.tag())
        created = await idp.create_user(wanted)
        by_id = await idp.find_user_by_employee_id(wanted.employee_id)
        by_name = await idp.find_user_by_username(wanted.user_name)
        assert by_id is not None and by_name is not None
        assert created.id == by_id.id == by_name.id
        for account in (created, by_id, by_name):
            assert account.active is True
            assert wanted.differences(account) == {}

    async def test_create_twice_returns_the_same_account(self, idp: IdentityProvider) -> None:
        """create_user is idempotent by employee id: the retry returns the first account, no second one."""
        tag = self.tag()
        wanted = self.attributes(tag)
        first = await idp.create_user(wanted)
        second = await idp.create_user(wanted)
        assert second.id == first.id
        mine = [
            a
            async for page in idp.iter_users(page_size=50)
            for a in page
            if a.employee_id == wanted.employee_id
        ]
        assert [a.id for a in mine] == [first.id]

    async def test_find_unknown_returns_none(self, idp: IdentityProvider) -> None:
        """Finding an employee id or user name nobody has gives None, not an error."""
        tag = self.tag()
        await idp.create_user(self.attributes(tag))  # the directory is not empty
        assert await idp.find_user_by_employee_id(f"E-{tag}-missing") is None
        assert await idp.find_user_by_username(f"nobody.{tag}@example.com") is None

    async def test_update_writes_only_the_changes(self, idp: IdentityProvider) -> None:
        """update_user writes only the given attributes: a stale Account does not undo an earlier update."""
        wanted = self.attributes(self.tag())
        stale = await idp.create_user(wanted)
        after_title = await idp.update_user(stale, {"title": "Staff Engineer"})
        assert after_title.title == "Staff Engineer"
        after_department = await idp.update_user(
            stale, {"department": "Research"}
        )  # stale still says Engineer
        read_back = await idp.find_user_by_employee_id(wanted.employee_id)
        assert read_back is not None
        for account in (after_department, read_back):
            assert account.title == "Staff Engineer"
            assert account.department == "Research"
            assert account.given_name == wanted.given_name
            assert account.family_name == wanted.family_name
            assert account.email == wanted.email
            assert account.user_name == wanted.user_name

    async def test_update_manager(self, idp: IdentityProvider) -> None:
        """manager_id is written by employee id and read back as the manager's employee id."""
        tag = self.tag()
        manager = await idp.create_user(self.attributes(tag, 1))
        report = await idp.create_user(self.attributes(tag, 2))
        updated = await idp.update_user(report, {"manager_id": manager.employee_id})
        assert updated.manager_id == manager.employee_id
        found = await idp.find_user_by_employee_id(report.employee_id)
        assert found is not None and found.manager_id == manager.employee_id

    async def test_deactivate_then_reactivate(self, idp: IdentityProvider) -> None:
        """A leaver's account reads back inactive (and still findable); reactivation makes it active again."""
        wanted = self.attributes(self.tag())
        account = await idp.create_user(wanted)
        await idp.deactivate_user(account.id)
        gone = await idp.find_user_by_employee_id(wanted.employee_id)
        assert gone is not None and gone.id == account.id and gone.active is False
        await idp.deactivate_user(account.id)  # idempotent
        back_in = await idp.find_user_by_username(wanted.user_name)
        assert back_in is not None and back_in.active is False
        await idp.reactivate_user(account.id)
        again = await idp.find_user_by_employee_id(wanted.employee_id)
        assert again is not None and again.id == account.id and again.active is True

    async def test_list_users_paged_returns_each_account_once(self, idp: IdentityProvider) -> None:
        """iter_users over 25 accounts with page_size 10 yields each exactly once, pages no larger than 10."""
        tag = self.tag()
        created = [await idp.create_user(self.attributes(tag, n)) for n in range(25)]
        await idp.deactivate_user(created[0].id)  # leavers are accounts too
        seen: list[str] = []
        async for page in idp.iter_users(page_size=10):
            assert 0 < len(page) <= 10
            seen += [a.id for a in page if a.employee_id.startswith(f"E-{tag}-")]
        assert sorted(seen) == sorted(a.id for a in created)

    async def test_concurrent_calls(self, idp: IdentityProvider) -> None:
        """Concurrent creates and finds all succeed and see consistent data."""
        tag = self.tag()
        created = await asyncio.gather(*(idp.create_user(self.attributes(tag, n)) for n in range(6)))
        found = await asyncio.gather(*(idp.find_user_by_employee_id(a.employee_id) for a in created))
        assert [f.id if f else None for f in found] == [a.id for a in created]

    async def test_delete_user(self, idp: IdentityProvider) -> None:
        """A deleted account is no longer found."""
        wanted = self.attributes(self.tag())
        account = await idp.create_user(wanted)
        await idp.delete_user(account.id)
        assert await idp.find_user_by_employee_id(wanted.employee_id) is None

    async def test_last_sign_in_of_new_account_is_none(self, idp: IdentityProvider) -> None:
        """An account that never signed in has no last sign-in."""
        account = await idp.create_user(self.attributes(self.tag()))
        assert await idp.last_sign_in(account.id) is None

    # ------------------------------------------------------------------ groups

    async def test_groups_exist(self, idp: IdentityProvider) -> None:
        """The three groups the suite uses are listed by name with distinct ids."""
        groups = [await self.group(idp, name) for name in GROUP_NAMES]
        listed = {g.name: g.id for g in await idp.list_groups()}
        assert {name: listed.get(name) for name in GROUP_NAMES} == {g.name: g.id for g in groups}
        assert len({g.id for g in groups}) == 3

    async def test_add_member_twice_is_one_membership(self, idp: IdentityProvider) -> None:
        """Adding a member twice is not an error and leaves exactly one membership."""
        engineering = await self.group(idp, "engineering")
        account = await idp.create_user(self.attributes(self.tag()))
        await idp.add_member(engineering.id, account.id)
        await idp.add_member(engineering.id, account.id)
        assert account.id in await idp.list_members(engineering.id)
        listed = next(g for g in await idp.list_groups() if g.id == engineering.id)
        assert account.id in listed.member_ids

    async def test_remove_member_twice_is_fine(self, idp: IdentityProvider) -> None:
        """Removing a member twice is not an error; the account is gone from that group only."""
        sales = await self.group(idp, "sales")
        all_staff = await self.group(idp, "all-staff")
        account = await idp.create_user(self.attributes(self.tag()))
        await idp.add_member(sales.id, account.id)
        await idp.add_member(all_staff.id, account.id)
        await idp.remove_member(sales.id, account.id)
        await idp.remove_member(sales.id, account.id)
        assert account.id not in await idp.list_members(sales.id)
        assert account.id in await idp.list_members(all_staff.id)

    async def test_remove_last_member_leaves_an_empty_group(self, idp: IdentityProvider) -> None:
        """A group can lose every member it has and take new ones afterwards."""
        tag = self.tag()
        sales = await self.make_group(idp, f"sales-{tag}")
        first = await idp.create_user(self.attributes(tag, 1))
        second = await idp.create_user(self.attributes(tag, 2))
        await idp.add_member(sales.id, first.id)
        await idp.remove_member(sales.id, first.id)
        assert await idp.list_members(sales.id) == set()
        await idp.add_member(sales.id, second.id)
        assert await idp.list_members(sales.id) == {second.id}

    async def test_list_groups_includes_members(self, idp: IdentityProvider) -> None:
        """list_groups reports each group's members as account ids."""
        engineering = await self.group(idp, "engineering")
        all_staff = await self.group(idp, "all-staff")
        tag = self.tag()
        engineer = await idp.create_user(self.attributes(tag, 1))
        seller = await idp.create_user(self.attributes(tag, 2))
        for group_id, account in (
            (engineering.id, engineer),
            (all_staff.id, engineer),
            (all_staff.id, seller),
        ):
            await idp.add_member(group_id, account.id)
        groups = {g.id: g for g in await idp.list_groups()}
        mine = {engineer.id, seller.id}
        assert groups[engineering.id].member_ids & mine == {engineer.id}
        assert groups[all_staff.id].member_ids & mine == {engineer.id, seller.id}

    async def test_create_users_judges_each_and_is_idempotent(self, idp: IdentityProvider) -> None:
        """create_users creates many accounts in one call, in order; one the provider refuses (its userName is
        another employee's) fails alone; a second call finds the others (marked existing), creating nothing."""
        tag = self.tag()
        taken = await idp.create_user(self.attributes(tag, 9))
        wanted = [
            self.attributes(tag, 1),
            self.attributes(tag, 2, user_name=taken.user_name, email=None),
            self.attributes(tag, 3),
        ]
        async for _ in idp.iter_users(page_size=500):  # a whole listing first, as the sync reads
            pass
        made = await idp.create_users(wanted)
        assert len(made) == 3 and isinstance(made[1], ConnectorError)
        created = [made[0], made[2]]
        for account, attributes in zip(created, (wanted[0], wanted[2]), strict=True):
            assert isinstance(account, Account) and not account.existing
            assert attributes.differences(account) == {}
        again = await idp.create_users([wanted[0], wanted[2]])
        assert [getattr(a, "id", None) for a in again] == [getattr(a, "id", None) for a in created]
        assert all(isinstance(a, Account) and a.existing for a in again)

    def unknown_account_id(self) -> str:
        """An account id shaped like the vendor's that names no account (override where ids look otherwise)."""
        return str(uuid.uuid4())

    async def test_add_and_remove_many_members(self, idp: IdentityProvider) -> None:
        """add_members/remove_members write many memberships of one group, idempotently, and report none failed;
        removing a non-member among them is fine."""
        tag = self.tag()
        group = await self.make_group(idp, f"bulk-{tag}")
        accounts = [await idp.create_user(self.attributes(tag, n)) for n in range(1, 5)]
        ids = [a.id for a in accounts]
        assert await idp.add_members(group.id, ids[:3]) == {}
        assert await idp.add_members(group.id, ids[:3]) == {}  # already members: nothing fails
        assert await idp.list_members(group.id) == set(ids[:3])
        assert await idp.remove_members(group.id, [ids[0], ids[1], ids[3]]) == {}  # ids[3] is no member
        assert await idp.list_members(group.id) == {ids[2]}
        assert await idp.remove_members(group.id, [ids[2]]) == {}
        assert await idp.list_members(group.id) == set()

    async def test_add_members_judges_each_member(self, idp: IdentityProvider) -> None:
        """A member the provider refuses (an id that names no account) fails alone, with an error; the others
        in the same call become members."""
        tag = self.tag()
        group = await self.make_group(idp, f"partial-{tag}")
        good = [await idp.create_user(self.attributes(tag, n)) for n in (1, 2)]
        unknown = self.unknown_account_id()
        failed = await idp.add_members(group.id, [good[0].id, unknown, good[1].id])
        assert set(failed) == {unknown}
        assert failed[unknown].message
        assert await idp.list_members(group.id) == {good[0].id, good[1].id}

    # ------------------------------------------------------------------ hostile input

    async def test_hostile_user_name_finds_exactly_that_user(self, idp: IdentityProvider) -> None:
        """A user name full of filter/DN metacharacters finds only its own account, never a decoy."""
        tag = self.tag()
        decoys = ["obrien@example.com", "o*@example.com", "o*", 'o"brien@example.com', "o\\\\x@example.com"]
        decoy_accounts: list[Account] = [
            await idp.create_user(self.attributes(tag, n, user_name=name, email=None))
            for n, name in enumerate(decoys, start=1)
        ]
        hostile = await idp.create_user(self.attributes(tag, 0, user_name=HOSTILE_USER_NAME, email=None))
        assert hostile.user_name == HOSTILE_USER_NAME
        found = await idp.find_user_by_username(HOSTILE_USER_NAME)
        assert found is not None and found.id == hostile.id and found.user_name == HOSTILE_USER_NAME
        for decoy in decoy_accounts:
            again = await idp.find_user_by_username(decoy.user_name)
            assert again is not None and again.id == decoy.id
        assert await idp.find_user_by_username("o*brien@example.com") is None
        assert await idp.find_user_by_username("*") is None
