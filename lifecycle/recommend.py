"""Explained review recommendations: ``keep``, ``revoke`` or ``none``, with the evidence a reviewer can check.
Pure, deterministic, no I/O. The reviewer decides; the recommendation and whether it was followed are audited.

For a membership (an employee's account in a group), in this order:

1. **how it came** (``provenance``, from the ledger): ``birthright`` — Tenure added it as an entitlement;
   ``approval`` — a recorded approval or a reviewer's keep; ``manual`` — neither (granted by hand). A birthright
   grant whose rule still applies, or an approval, is ``keep``;
2. **last sign-in**, where the identity provider records one: none for ``review.dormant_days`` → ``revoke``;
3. **peers** — the other employees with the same department and title, or, when fewer than
   :data:`MIN_PEERS` of them, the same department (the policy's ``review.peers``, most specific level first;
   it may name only department and title): when at least :data:`KEEP_SHARE` of them hold the
   group → ``keep``; at most :data:`REVOKE_SHARE` → ``revoke``; in between, or too few peers → ``none``.

Peers are defined by the policy's peer definition alone: no other attribute of a person (age, gender,
nationality, location, employment type, anything the policy does not name as the peer definition) is read. Account
findings (orphan, terminated but active, dormant) are recommended from their own evidence.

Every recommendation carries one evidence line, e.g. ``2 of 118 peers (Sales / Account Executive) hold
finance-ledger; granted by hand; last sign-in 2026-11-20``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lifecycle.birthright import birthright_groups
from lifecycle.policy import Policy
from lifecycle.review import Finding, FindingKind
from models.compact import AccountFacts, EmployeeFacts
from models.domain import EmployeeStatus

__all__ = [
    "Advice",
    "Provenance",
    "Recommendation",
    "Peers",
    "PEER_KEYS",
    "recommend",
    "recommend_finding",
]

Advice = Literal["keep", "revoke", "none"]
Provenance = Literal["birthright", "approval", "manual"]
PeerKey = Literal["department", "title"]
PEER_KEYS: tuple[PeerKey, ...] = ("department", "title")
MIN_PEERS = 3
KEEP_SHARE = 0.5
REVOKE_SHARE = 0.1
_HOW = {"birthright": "added by a birthright rule", "approval": "approved", "manual": "granted by hand"}


@dataclass(frozen=True)
class Recommendation:
    advice: Advice
    evidence: str
    provenance: Provenance | None = None
    peers_holding: int | None = None
    peers: int | None = None


class Peers:
    """Who holds which group among the employees still here, counted at each level of the policy's peer
    definition (``review.peers``, default department + title, then department); nothing else about a person
    is read."""

    def __init__(
        self,
        employees: Iterable[EmployeeFacts],
        holdings: Mapping[str, Iterable[str]],
        keys: Sequence[PeerKey] = PEER_KEYS,
    ) -> None:
        self.levels = [tuple(keys[:n]) for n in range(len(keys), 0, -1)]  # most specific first
        self._size: Counter[tuple[str, ...]] = Counter()
        self._held: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        for employee in employees:
            if employee.status is EmployeeStatus.TERMINATED:
                continue  # a leaver is nobody's peer
            groups = set(holdings.get(employee.employee_id, ()))
            for level in self.levels:
                key = self._key(employee, level)
                if key is not None:
                    self._size[key] += 1
                    self._held[key].update(groups)

    @staticmethod
    def _key(employee: EmployeeFacts, level: tuple[PeerKey, ...]) -> tuple[str, ...] | None:
        values = tuple(getattr(employee, name) or "" for name in level)
        return None if not all(values) else (*level, *values)

    def share(self, employee: EmployeeFacts, group: str, holds: bool = True) -> tuple[str, int, int] | None:
        """(who the peers are, how many of them hold ``group``, how many they are), the employee excluded,
        at the most specific level with at least :data:`MIN_PEERS` others; None if there is none."""
        mine = 1 if holds else 0
        for level in self.levels:
            key = self._key(employee, level)
            if key is None:
                continue
            total = self._size[key] - 1
            if total >= MIN_PEERS:
                return " / ".join(key[len(level) :]), self._held[key][group] - mine, total
        return None


def _seen(account: AccountFacts) -> str:
    return f"last sign-in {account.last_sign_in:%Y-%m-%d}" if account.last_sign_in else "no sign-in recorded"


def recommend(
    group: str,
    employee: EmployeeFacts,
    account: AccountFacts,
    *,
    peers: Peers,
    provenance: Provenance,
    policy: Policy,
    now: datetime,
) -> Recommendation:
    """The recommendation for ``employee``'s membership of ``group`` (module docstring)."""
    how = _HOW[provenance]
    share = peers.share(employee, group, holds=group in account.groups)
    peer_text = f"{share[1]} of {share[2]} peers ({share[0]}) hold {group}" if share else "too few peers"
    evidence = f"{peer_text}; {how}; {_seen(account)}"

    def said(advice: Advice, why: str | None = None) -> Recommendation:
        line = f"{why}; {evidence}" if why else evidence
        held, total = (share[1], share[2]) if share else (None, None)
        return Recommendation(advice, line, provenance, held, total)

    if provenance == "birthright" and group in birthright_groups(employee, policy):
        return said("keep", "the birthright rule still grants it")
    if provenance == "approval":
        return said("keep")
    dormant_since = now - timedelta(days=policy.review.dormant_days)
    if account.last_sign_in is not None and account.last_sign_in < dormant_since:
        return said("revoke", f"unused for over {policy.review.dormant_days} days")
    if share is None:
        return said("none")
    _, holding, total = share
    if holding >= KEEP_SHARE * total:
        return said("keep")
    if holding <= REVOKE_SHARE * total:
        return said("revoke")
    return said("none")


def recommend_finding(
    finding: Finding,
    employee: EmployeeFacts | None,
    account: AccountFacts,
    *,
    peers: Peers,
    provenance: Provenance,
    policy: Policy,
    now: datetime,
) -> Recommendation:
    """The recommendation for one review finding: account findings from their own evidence, memberships
    (outside policy, separation of duties, re-certification) by :func:`recommend` on the group a revoke
    would remove."""
    match finding.kind:
        case FindingKind.ORPHAN:
            return Recommendation("revoke", f"no HR record for this account; {_seen(account)}")
        case FindingKind.TERMINATED_ACTIVE:
            return Recommendation("revoke", f"the HR record says the employee has left; {_seen(account)}")
        case FindingKind.DORMANT:
            return Recommendation(
                "revoke", f"unused for over {policy.review.dormant_days} days; {_seen(account)}"
            )
    group = finding.revoke_group or finding.group
    if employee is None or group is None:
        return Recommendation("none", finding.detail)
    return recommend(group, employee, account, peers=peers, provenance=provenance, policy=policy, now=now)
