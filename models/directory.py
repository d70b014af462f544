"""The sync's copy of a directory that tracks changes (:mod:`connectors.delta`): its accounts, its groups with
their members, and the delta links to read what changed since.

It is a cache of the IdP's state as last read, not Tenure's decisions (those are in :mod:`models.ledger`): losing
it costs one full read. One copy per name (the sync's share), written only by the applier
(:meth:`engine.applier.Applier.mirror_directory`), in one transaction with its links, so the copy and the links
never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, delete
from sqlmodel import Field, Session, SQLModel, col, select

from models.audit import utcnow
from models.domain import Account, Group

__all__ = [
    "DirectoryLink",
    "DirectoryAccount",
    "DirectoryGroup",
    "Mirror",
    "MirrorChanges",
    "mirror_get",
    "mirror_put",
]


class DirectoryLink(SQLModel, table=True):
    """The delta links of one copy and when the directory was read."""

    __tablename__ = "directory_link"

    name: str = Field(primary_key=True, max_length=128)
    users_link: str = Field(sa_column=Column(Text, nullable=False))
    groups_link: str = Field(sa_column=Column(Text, nullable=False))
    read_at: datetime = Field(default_factory=utcnow)


class DirectoryAccount(SQLModel, table=True):
    """One account of the copy, as the IdP last showed it (without memberships: those are the groups')."""

    __tablename__ = "directory_account"

    name: str = Field(primary_key=True, max_length=128)
    account_id: str = Field(primary_key=True, max_length=255)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class DirectoryGroup(SQLModel, table=True):
    """One group of the copy with its member account ids."""

    __tablename__ = "directory_group"

    name: str = Field(primary_key=True, max_length=128)
    group_id: str = Field(primary_key=True, max_length=255)
    group_name: str = Field(sa_column=Column(Text, nullable=False))
    member_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))


@dataclass
class Mirror:
    """A whole copy: accounts and groups by id, and the links to read on from."""

    users_link: str
    groups_link: str
    read_at: datetime
    accounts: dict[str, Account] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)


@dataclass(frozen=True)
class MirrorChanges:
    """Which rows of a copy changed since it was loaded (the rest are written as they are)."""

    accounts: frozenset[str] = frozenset()  # account ids written again, or removed when not in the copy
    groups: frozenset[str] = frozenset()


def mirror_get(*, session: Session, name: str) -> Mirror | None:
    link = session.get(DirectoryLink, name)
    if link is None:
        return None
    accounts = session.exec(select(DirectoryAccount).where(DirectoryAccount.name == name)).all()
    groups = session.exec(select(DirectoryGroup).where(DirectoryGroup.name == name)).all()
    return Mirror(
        users_link=link.users_link,
        groups_link=link.groups_link,
        read_at=link.read_at if link.read_at.tzinfo else link.read_at.replace(tzinfo=UTC),
        accounts={row.account_id: Account.model_validate(row.data) for row in accounts},
        groups={
            row.group_id: Group(id=row.group_id, name=row.group_name, member_ids=frozenset(row.member_ids))
            for row in groups
        },
    )


# ----------------------------------------------------------------------------------- writes (the applier's)


def mirror_put(*, session: Session, name: str, mirror: Mirror, changes: MirrorChanges | None = None) -> None:
    """Store ``mirror`` under ``name``: every row when ``changes`` is None (a full read), else only the rows
    ``changes`` names. Not committed here."""
    accounts: Iterable[str] = mirror.accounts if changes is None else changes.accounts
    groups: Iterable[str] = mirror.groups if changes is None else changes.groups
    account_ids, group_ids = list(accounts), list(groups)
    if changes is None:
        session.execute(delete(DirectoryAccount).where(col(DirectoryAccount.name) == name))
        session.execute(delete(DirectoryGroup).where(col(DirectoryGroup.name) == name))
    else:
        for chunk in _chunks(account_ids):
            session.execute(
                delete(DirectoryAccount).where(
                    col(DirectoryAccount.name) == name, col(DirectoryAccount.account_id).in_(chunk)
                )
            )
        for chunk in _chunks(group_ids):
            session.execute(
                delete(DirectoryGroup).where(
                    col(DirectoryGroup.name) == name, col(DirectoryGroup.group_id).in_(chunk)
                )
            )
    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "account_id": account_id,
            "data": mirror.accounts[account_id].model_dump(mode="json", exclude={"groups"}),
        }
        for account_id in account_ids
        if account_id in mirror.accounts
    ]
    if rows:
        session.execute(DirectoryAccount.__table__.insert(), rows)  # type: ignore[attr-defined]
    group_rows: list[dict[str, Any]] = [
        {
            "name": name,
            "group_id": group_id,
            "group_name": mirror.groups[group_id].name,
            "member_ids": sorted(mirror.groups[group_id].member_ids),
        }
        for group_id in group_ids
        if group_id in mirror.groups
    ]
    if group_rows:
        session.execute(DirectoryGroup.__table__.insert(), group_rows)  # type: ignore[attr-defined]
    session.merge(
        DirectoryLink(
            name=name, users_link=mirror.users_link, groups_link=mirror.groups_link, read_at=mirror.read_at
        )
    )


def _chunks(ids: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
