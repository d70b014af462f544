"""Preflight: before the first change of a run, every group the policy can grant must exist in the IdP.

A policy naming a group the identity provider lacks would otherwise create accounts and then fail every
membership, leaving people half-provisioned (issue "Hardening", 7). One ``list_groups`` call (the sync's own
read of the groups, or one call for a single employee) settles it; a missing group refuses the whole run, names
the groups, and nothing is applied. The CLI exits 2 (a configuration error); a flow run ends Failed.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.protocols import IdentityProvider
from lifecycle.policy import Policy
from models.domain import Group

__all__ = ["MissingGroups", "require_groups", "check_groups"]


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
