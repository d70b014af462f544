"""Change tracking: an identity provider that can say what changed since a delta link it handed out.

Modelled on Microsoft Graph delta query (https://learn.microsoft.com/en-us/graph/delta-query-overview): the first
round returns every object and ends with a *delta link*; a later round from that link returns only objects
created, changed or removed since, and a new link. Links expire (410 Gone / ``syncStateNotFound``): the caller
then reads everything again and starts over. The sync keeps the last link beside its copy of the directory
(:mod:`engine.directory`), so a night with 1% drift reads 1% of the directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from connectors.errors import PermanentAPIError
from models.domain import Account

__all__ = ["DeltaExpired", "DeltaPage", "GroupChange", "GroupDeltaPage", "DirectoryDelta"]


class DeltaExpired(PermanentAPIError):
    """The delta link is no longer valid (410 Gone / syncStateNotFound): do a full read, then start over."""


@dataclass(frozen=True)
class DeltaPage:
    """One page of user changes: users created or changed (read them in full with ``get_users``), users
    removed (deleted or soft-deleted), and, on the last page, the delta link to keep for next time."""

    changed_ids: tuple[str, ...] = ()
    removed_ids: tuple[str, ...] = ()
    delta_link: str | None = None


@dataclass(frozen=True)
class GroupChange:
    """A group in a page of group changes: its new name if it changed, members added and removed. A large group
    may come in several pieces (several pages name it); the pieces add up."""

    id: str
    name: str | None = None
    added_member_ids: frozenset[str] = frozenset()
    removed_member_ids: frozenset[str] = frozenset()
    removed: bool = False


@dataclass(frozen=True)
class GroupDeltaPage:
    groups: tuple[GroupChange, ...] = ()
    delta_link: str | None = None


@runtime_checkable
class DirectoryDelta(Protocol):
    """What an IdentityProvider offers on top of the protocol when it tracks changes (Entra ID today)."""

    async def latest_user_delta_link(self) -> str:
        """A link for "from now on", reading no user: taken before a full read, nothing changed during it is
        missed."""
        ...

    def iter_user_changes(self, delta_link: str | None = None) -> AsyncIterator[DeltaPage]:
        """User changes since ``delta_link``; the last page carries the next link. Raises DeltaExpired."""
        ...

    def iter_group_changes(self, delta_link: str | None = None) -> AsyncIterator[GroupDeltaPage]:
        """Group changes since ``delta_link`` (None: every group with all its members, the first round)."""
        ...

    async def get_users(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The current state of these accounts; ids that no longer exist are left out."""
        ...
