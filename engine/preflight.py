"""Preflight: before the first change of a run, every group the policy can grant must exist in the IdP.

A policy naming a group the identity provider lacks would otherwise create accounts and then fail every
membership, leaving people half-provisioned (issue "Hardening", 7). One ``list_groups`` call (the sync's own
read of the groups, or one call for a single employee) settles it; a missing group refuses the whole run, names
the groups, and nothing is applied. The CLI exits 2 (a configuration error); a flow run ends Failed.

:func:`check_online` is ``tenure config check --online``: one read per configured system — the HRIS (one
record, or the header of an empty export), the IdP (one page of users and the policy's groups), the ticketing
system (its default queue) — each reported with what failed and why. It reads, never writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from connectors.errors import ConnectorError
from connectors.protocols import Connectors, IdentityProvider
from lifecycle.policy import Policy
from models.domain import Group

__all__ = ["MissingGroups", "require_groups", "check_groups", "OnlineCheck", "check_online"]


class MissingGroups(ValueError):
    """Groups the policy grants that the identity provider does not have."""

    def __init__(self, missing: list[str], source: str) -> None:
        self.missing = missing
        super().__init__(
            f"the policy grants {len(missing)} group(s) the identity provider ({source}) does not have: "
            f"{', '.join(missing)}; create them or fix the policy (nothing was changed)"
        )


def require_groups(groups: Iterable[Group], policy: Policy, *, source: str) -> dict[str, str]:
    """Group name → id of ``groups``; raises :class:`MissingGroups` when a policy group is not among them."""
    ids = {g.name: g.id for g in groups}
    missing = sorted(policy.managed_groups - ids.keys())
    if missing:
        raise MissingGroups(missing, source)
    return ids


async def check_groups(idp: IdentityProvider, policy: Policy) -> dict[str, str]:
    """One ``list_groups`` call, then :func:`require_groups`."""
    return require_groups(await idp.list_groups(), policy, source=idp.source)


@dataclass(frozen=True)
class OnlineCheck:
    """One system's answer to its one read: ``problem`` is None when it answered as it should."""

    system: str  # "HRIS", "IdP", "ticketing"
    source: str
    checked: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def _hris_read(connectors: Connectors) -> str:
    records = connectors.hris.iter_employees()
    try:
        async for _ in records:
            return "read one record"
    finally:
        await records.aclose()  # type: ignore[attr-defined]  # an async generator: stop after one record
    return "read the export: no records"


async def _idp_read(connectors: Connectors, policy: Policy) -> str:
    pages = connectors.idp.iter_users(page_size=1)
    try:
        async for _ in pages:
            break
    finally:
        await pages.aclose()  # type: ignore[attr-defined]
    await check_groups(connectors.idp, policy)
    return f"read one page of users and the groups ({len(policy.managed_groups)} policy groups present)"


async def check_online(connectors: Connectors, policy: Policy) -> list[OnlineCheck]:
    """One read per configured system (module docstring); every system is tried, whatever the others say."""
    results: list[OnlineCheck] = []

    async def attempt(system: str, source: str, read: Awaitable[str]) -> None:
        try:
            checked = await read
        except (ConnectorError, MissingGroups) as exc:
            results.append(OnlineCheck(system, source, "failed", f"{type(exc).__name__}: {exc}"))
        else:
            results.append(OnlineCheck(system, source, checked))

    await attempt("HRIS", connectors.hris.source, _hris_read(connectors))
    await attempt("IdP", connectors.idp.source, _idp_read(connectors, policy))
    if connectors.ticketing is not None:
        await attempt("ticketing", connectors.ticketing.source, _queue_read(connectors))
    return results


async def _queue_read(connectors: Connectors) -> str:
    assert connectors.ticketing is not None
    await connectors.ticketing.check_queue()
    return "read the default queue"
