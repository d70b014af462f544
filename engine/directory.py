"""Reading the directory for a sync: every page, or — when the IdP tracks changes — only what changed since the
copy the last sync kept.

- **Full read** (any IdP): ``iter_users`` pages and ``list_groups``. An IdP with change tracking
  (:class:`connectors.delta.DirectoryDelta`, Entra ID) is read the same way for users, with a user delta link
  taken *before* the read (nothing changed during it is missed), and its groups with their members from the first
  round of the group delta (one set of pages, ending with the group delta link) instead of one read per group.
  The result becomes the sync's copy (:mod:`models.directory`).
- **Delta read**: the users changed or removed since the copy's link (then the changed users in full,
  ``get_users``), and the groups whose name or members changed. The copy is brought up to date and gives the
  same snapshot a full read would; the accounts that changed are the *drifted* ones, which an incremental
  sync plans too. An expired link (410 / ``syncStateNotFound``) means a full read.

Graph: https://learn.microsoft.com/en-us/graph/delta-query-overview, …/delta-query-users, …/api/group-delta.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.delta import DeltaExpired, DirectoryDelta
from connectors.protocols import IdentityProvider
from models.db import session_scope
from models.directory import Mirror, MirrorChanges, mirror_get
from models.domain import Account, Group

__all__ = ["DirectoryRead", "read_directory"]

log = logging.getLogger("tenure.sync.directory")


@dataclass
class DirectoryRead:
    """The directory as one sync sees it, and what to keep of it."""

    accounts: list[Account]  # every account (memberships are in ``groups``)
    groups: list[Group]
    pages: int  # pages (and look-ups) read
    how: str  # "full", "delta", or "full (delta link expired)"
    drifted: frozenset[str] = frozenset()  # delta reads: employee ids whose account or memberships changed
    mirror: Mirror | None = None  # the copy to store (change-tracking IdPs only)
    changes: MirrorChanges | None = None  # None: store every row
    previous_links: tuple[str, str] | None = None  # the links the delta read started from

    def keep_previous_links(self) -> None:
        """Store the changed rows but read on from the old links: a run that could not process every change
        sees the same changes again next time rather than losing them."""
        if self.mirror is not None and self.previous_links is not None:
            self.mirror.users_link, self.mirror.groups_link = self.previous_links


async def read_directory(
    idp: IdentityProvider, *, database_url: str, name: str, page_size: int, reread: bool = False
) -> DirectoryRead:
    """The directory for the sync named ``name`` (its share): from its copy and the delta when the IdP tracks
    changes and a copy exists (unless ``reread``), else in full."""
    if not isinstance(idp, DirectoryDelta):
        return await _full_read(idp, page_size)
    with session_scope(database_url) as session:
        mirror = None if reread else mirror_get(session=session, name=name)
    if mirror is not None:
        try:
            return await _delta_read(idp, mirror)
        except DeltaExpired:
            log.warning("the directory's delta link expired: reading it in full")
            read = await _tracked_full_read(idp)
            read.how = "full (delta link expired)"
            return read
    return await _tracked_full_read(idp)


async def _users(idp: IdentityProvider, page_size: int | None) -> tuple[list[Account], int]:
    """Every account; ``page_size`` None: the connector's own largest page (Graph: 999)."""
    accounts: list[Account] = []
    pages = 0
    pager = idp.iter_users() if page_size is None else idp.iter_users(page_size=page_size)
    async for page in pager:
        pages += 1
        accounts += page
    return accounts, pages


async def _full_read(idp: IdentityProvider, page_size: int) -> DirectoryRead:
    accounts, pages = await _users(idp, page_size)
    groups = await idp.list_groups()
    return DirectoryRead(accounts, groups, pages + 1, "full")


async def _tracked_full_read(idp: DirectoryDelta) -> DirectoryRead:
    read_at = datetime.now(UTC)
    users_link = await idp.latest_user_delta_link()
    accounts, pages = await _users(idp, None)  # type: ignore[arg-type]  # a DirectoryDelta IdP
    groups: dict[str, Group] = {}
    groups_link, group_pages = await _apply_group_changes(idp, None, groups)
    mirror = Mirror(users_link, groups_link, read_at, {a.id: _bare(a) for a in accounts}, groups)
    return DirectoryRead(accounts, list(groups.values()), pages + group_pages + 1, "full", mirror=mirror)


async def _delta_read(idp: DirectoryDelta, mirror: Mirror) -> DirectoryRead:
    previous = (mirror.users_link, mirror.groups_link)
    changed: set[str] = set()
    removed: set[str] = set()
    users_link: str | None = None
    pages = 0
    async for page in idp.iter_user_changes(mirror.users_link):
        pages += 1
        changed.update(page.changed_ids)
        removed.update(page.removed_ids)
        users_link = page.delta_link or users_link
    changed -= removed
    fresh = await idp.get_users(sorted(changed)) if changed else {}
    pages += -(-len(changed) // 20)  # the look-ups, 20 to a $batch
    removed |= changed - fresh.keys()  # gone between the delta page and the look-up
    touched_accounts = changed | removed
    drifted = {a.employee_id for i in touched_accounts if (a := mirror.accounts.get(i)) and a.employee_id}
    for account_id in removed:
        mirror.accounts.pop(account_id, None)
    for account_id, account in fresh.items():
        mirror.accounts[account_id] = _bare(account)
        if account.employee_id:
            drifted.add(account.employee_id)
    before = {gid: (g.name, g.member_ids) for gid, g in mirror.groups.items()}
    groups_link, group_pages = await _apply_group_changes(idp, mirror.groups_link, mirror.groups)
    after = {gid: (g.name, g.member_ids) for gid, g in mirror.groups.items()}
    touched_groups = {gid for gid in before.keys() | after.keys() if before.get(gid) != after.get(gid)}
    for gid in touched_groups:
        (old_name, old), (new_name, new) = (
            before.get(gid, ("", frozenset())),
            after.get(gid, ("", frozenset())),
        )
        moved = old ^ new if old_name == new_name else old | new  # a rename changes every member's groups
        drifted |= {a.employee_id for i in moved if (a := mirror.accounts.get(i)) and a.employee_id}
    if users_link is None:
        raise DeltaExpired(
            "the user delta answer carried no delta link", source=str(getattr(idp, "source", "directory"))
        )
    mirror.users_link, mirror.groups_link = users_link, groups_link
    mirror.read_at = datetime.now(UTC)
    return DirectoryRead(
        list(mirror.accounts.values()),
        list(mirror.groups.values()),
        pages + group_pages,
        "delta",
        drifted=frozenset(drifted),
        mirror=mirror,
        changes=MirrorChanges(frozenset(touched_accounts), frozenset(touched_groups)),
        previous_links=previous,
    )


async def _apply_group_changes(
    idp: DirectoryDelta, link: str | None, groups: dict[str, Group]
) -> tuple[str, int]:
    """Fold the group delta from ``link`` (None: the first round, every group) into ``groups``."""
    new_link: str | None = None
    pages = 0
    async for page in idp.iter_group_changes(link):
        pages += 1
        for change in page.groups:
            if change.removed:
                groups.pop(change.id, None)
                continue
            current = groups.get(change.id) or Group(id=change.id, name=change.name or "")
            groups[change.id] = Group(
                id=change.id,
                name=change.name if change.name is not None else current.name,
                member_ids=(current.member_ids | change.added_member_ids) - change.removed_member_ids,
            )
        new_link = page.delta_link or new_link
    if new_link is None:
        raise DeltaExpired(
            "the group delta answer carried no delta link", source=str(getattr(idp, "source", "directory"))
        )
    return new_link, pages


def _bare(account: Account) -> Account:
    return account if not account.groups else account.model_copy(update={"groups": frozenset()})
