"""Group-wise membership writes: a batch's membership actions, written one request per group (not per member).

The applier (:meth:`engine.applier.Applier.apply_many`) gathers the :class:`~lifecycle.actions.AddMembership` and
:class:`~lifecycle.actions.RemoveMembership` actions of a batch's employees — whose locks it holds — and hands
them here. They are grouped by group and sent through
:meth:`connectors.protocols.IdentityProvider.add_members` / ``remove_members`` (both in one request where the
connector offers :class:`~connectors.protocols.GroupMembersWriter`), a few groups at a time; what
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
from connectors.protocols import BatchWriter, GroupMembersWriter, IdentityProvider
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
    if isinstance(idp, BatchWriter):
        return await _write_batched(idp, writes, group_id)
    grouped: dict[str, list[MembershipWrite]] = defaultdict(list)
    for write in writes:
        grouped[write.action.group].append(write)
    outcome: dict[str, ConnectorError | None] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(group: str, members: list[MembershipWrite]) -> None:
        adds = [w.account_id for w in members if isinstance(w.action, AddMembership)]
        removes = [w.account_id for w in members if not isinstance(w.action, AddMembership)]
        async with semaphore:
            try:
                failed = await _write_group(idp, await group_id(group), adds, removes)
            except ConnectorError as exc:
                log.warning("writing %d member(s) of %s failed: %s", len(members), group, exc)
                failed = {w.account_id: exc for w in members}
            except Exception as exc:  # noqa: BLE001 - a defect fails this group's members, not the batch
                log.exception("writing the members of %s crashed", group)
                crash = ConnectorError(f"internal error: {type(exc).__name__}", source="tenure")
                failed = {w.account_id: crash for w in members}
            for write in members:
                outcome[write.action.key] = failed.get(write.account_id)

    await asyncio.gather(*(one(group, members) for group, members in grouped.items()))
    return outcome


async def _write_batched(
    idp: BatchWriter, writes: Sequence[MembershipWrite], group_id: Callable[[str], Awaitable[str]]
) -> dict[str, ConnectorError | None]:
    """Every group's changes together, for a connector that batches writes across groups (Graph ``$batch``)."""
    outcome: dict[str, ConnectorError | None] = {}
    keyed: dict[tuple[str, str, bool], list[MembershipWrite]] = defaultdict(list)
    for write in writes:
        try:
            gid = await group_id(write.action.group)
        except ConnectorError as exc:
            outcome[write.action.key] = exc
            continue
        keyed[(gid, write.account_id, isinstance(write.action, AddMembership))].append(write)
    try:
        failed = await idp.write_memberships(list(keyed))
    except ConnectorError as exc:
        log.warning("writing %d membership(s) failed: %s", len(keyed), exc)
        failed = dict.fromkeys(keyed, exc)
    for key, members in keyed.items():
        for write in members:
            outcome[write.action.key] = failed.get(key)
    return outcome


async def _write_group(
    idp: IdentityProvider, group_id: str, adds: list[str], removes: list[str]
) -> dict[str, ConnectorError]:
    """One group's changes: in one request where the connector can (:class:`GroupMembersWriter`), else one
    request per direction (one plan per employee: an account is never both added and removed in a batch)."""
    if adds and removes and isinstance(idp, GroupMembersWriter):
        return await idp.change_group_members(group_id, adds, removes)
    failed: dict[str, ConnectorError] = {}
    if adds:
        failed |= await idp.add_members(group_id, adds)
    if removes:
        failed |= await idp.remove_members(group_id, removes)
    return failed
