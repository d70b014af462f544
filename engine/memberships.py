"""Group-wise membership writes: a batch's membership actions, written one request per group (not per member).

The applier (:meth:`engine.applier.Applier.apply_many`) gathers the :class:`~lifecycle.actions.AddMembership` and
:class:`~lifecycle.actions.RemoveMembership` actions of a batch's employees — whose locks it holds — and hands
them here. They are grouped by (group, add or remove) and sent through
:meth:`connectors.protocols.IdentityProvider.add_members` / ``remove_members``, a few groups at a time; what
comes back is judged per action, so each membership keeps its own ledger entry and audit row (written by the
applier, the one door; nothing is written here).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from connectors.errors import ConnectorError
from connectors.protocols import IdentityProvider
from lifecycle.actions import AddMembership, RemoveMembership

__all__ = ["MembershipWrite", "write_memberships", "GROUP_CONCURRENCY"]

log = logging.getLogger("tenure.apply")

GROUP_CONCURRENCY = 4  # groups written at once (each request may carry hundreds of members)


@dataclass(frozen=True)
class MembershipWrite:
    """One membership action and the account it acts on."""

    action: AddMembership | RemoveMembership
    account_id: str


async def write_memberships(
    idp: IdentityProvider,
    writes: Sequence[MembershipWrite],
    group_id: Callable[[str], Awaitable[str]],
    *,
    concurrency: int = GROUP_CONCURRENCY,
) -> dict[str, ConnectorError | None]:
    """Write ``writes`` grouped per (group, direction); action key → None (done) or the error that failed it.
    A call that fails as a whole (the group is unknown, the service is down) fails every member it carried."""
    grouped: dict[tuple[str, bool], list[MembershipWrite]] = defaultdict(list)
    for write in writes:
        grouped[(write.action.group, isinstance(write.action, AddMembership))].append(write)
    outcome: dict[str, ConnectorError | None] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(group: str, add: bool, members: list[MembershipWrite]) -> None:
        async with semaphore:
            ids = [w.account_id for w in members]
            try:
                gid = await group_id(group)
                failed = await (idp.add_members(gid, ids) if add else idp.remove_members(gid, ids))
            except ConnectorError as exc:
                log.warning(
                    "%s %d member(s) of %s failed: %s", "adding" if add else "removing", len(ids), group, exc
                )
                failed = dict.fromkeys(ids, exc)
            except Exception as exc:  # noqa: BLE001 - a defect fails this group's members, not the batch
                log.exception("writing the members of %s crashed", group)
                crash = ConnectorError(f"internal error: {type(exc).__name__}", source="tenure")
                failed = dict.fromkeys(ids, crash)
            for write in members:
                outcome[write.action.key] = failed.get(write.account_id)

    await asyncio.gather(*(one(group, add, members) for (group, add), members in grouped.items()))
    return outcome
