"""Birthright rules and entitlements: which groups an employee should hold. Pure.

Every rule whose ``match`` fits the employee contributes its groups; an employee gets the union
(README "Policy file"). A rule fits when every key matches; a list value means "any of"; values
compare case-insensitively and trimmed; an empty match fits everyone; an employee attribute that is
missing never matches a non-empty value.

Privileged groups are never birthright: when a rule names one, the employee is entitled to it only
with a recorded approval (otherwise the planner requests one). An approval recorded for a privileged
group grants it even if no rule names it (the approval flow's outcome).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from lifecycle.policy import BirthrightRule, Policy
from models.compact import EmployeeFacts
from models.domain import Employee

__all__ = ["rule_matches", "matching_rules", "birthright_groups", "Entitlements", "entitlements"]


def _norm(value: str | None) -> str | None:
    return None if value is None else value.strip().casefold()


@functools.lru_cache(maxsize=4096)
def _options(wanted: str | tuple[str, ...]) -> frozenset[str | None]:
    """A match value's options, normalised (a rule's values are few; every employee is compared with them)."""
    return frozenset(_norm(option) for option in ((wanted,) if isinstance(wanted, str) else wanted))


@functools.lru_cache(maxsize=256)
def _keys_text(keys: tuple[str, ...]) -> str:
    """A rule's match keys as its reasons name them ("department, location", or "everyone")."""
    return ", ".join(sorted(keys)) or "everyone"


def rule_matches(rule: BirthrightRule, employee: EmployeeFacts) -> bool:
    """Whether every key of ``rule.match`` fits the employee (see the module docstring)."""
    return _fits(rule, employee, {})


def _fits(rule: BirthrightRule, employee: EmployeeFacts, normalised: dict[str, str | None]) -> bool:
    """:func:`rule_matches`, the employee's normalised attributes kept in ``normalised`` for the next rule."""
    for key, wanted in rule.match.items():
        if key not in normalised:
            normalised[key] = _norm(getattr(employee, key))
        have = normalised[key]
        if have is None or have not in _options(wanted if isinstance(wanted, str) else tuple(wanted)):
            return False
    return True


def matching_rules(employee: EmployeeFacts, policy: Policy) -> list[tuple[int, BirthrightRule]]:
    """The rules that fit, with their 1-based position in the policy file (for reasons)."""
    normalised: dict[str, str | None] = {}
    return [
        (i, rule) for i, rule in enumerate(policy.birthright, start=1) if _fits(rule, employee, normalised)
    ]


def birthright_groups(employee: EmployeeFacts, policy: Policy) -> frozenset[str]:
    """Union of the groups of all fitting rules, privileged groups excluded."""
    privileged = policy.privileged_names
    return frozenset(g for _, rule in matching_rules(employee, policy) for g in rule.groups) - privileged


@dataclass(frozen=True)
class Entitlements:
    """What the employee should hold, and why.

    ``grants``: groups to hold (birthright plus approved privileged groups).
    ``needs_approval``: privileged groups a rule names but no approval covers yet.
    ``reasons``: group → human-readable source ("birthright rule 2", "approval").
    """

    grants: frozenset[str]
    needs_approval: frozenset[str]
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def protected(self) -> frozenset[str]:
        """Groups the planner must never remove: granted, or awaiting an approval the policy asks for."""
        return self.grants | self.needs_approval


def entitlements(
    employee: Employee,
    policy: Policy,
    approvals: frozenset[str] = frozenset(),
    *,
    revoked: frozenset[str] = frozenset(),
) -> Entitlements:
    """Birthright plus granted groups for ``employee``.

    ``approvals``: groups this employee holds a recorded grant for — a privileged group's approval, or any
    membership a reviewer kept. ``revoked``: groups a reviewer revoked; they are neither granted (not even as
    birthright) nor requested again until a new approval is recorded, which clears the revocation."""
    privileged = policy.privileged_names
    reasons: dict[str, str] = {}
    rule_privileged: set[str] = set()
    for index, rule in matching_rules(employee, policy):
        keys = _keys_text(tuple(rule.match))
        for group in rule.groups:
            if group in privileged:
                rule_privileged.add(group)
            else:
                reasons.setdefault(group, f"birthright rule {index} ({keys})")
    approved = approvals - revoked
    for group in approved:
        reasons.setdefault(
            group,
            "privileged group with a recorded approval"
            if group in privileged
            else "kept in an access review",
        )
    for group in rule_privileged - approved - revoked:
        reasons[group] = "privileged group named by a birthright rule; needs approval"
    birthright = frozenset(g for g in reasons if g not in privileged) - revoked
    return Entitlements(
        grants=birthright | approved,
        needs_approval=frozenset(rule_privileged) - approved - revoked,
        reasons=reasons,
    )
