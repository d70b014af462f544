"""Correlation: which employee each account found in a target belongs to (midPoint's "situations"). Pure.

Every account a target holds is in one :class:`Situation`:

- **linked** — it carries the employee id of an employee (Tenure created or adopted it; for SCIM targets the
  employee id attribute is ``externalId``);
- **unlinked** — it carries no employee id of an employee, but the target's correlation rule matches it to
  exactly one: it is adopted (a ``link`` action writes the employee id onto it, then it is reconciled) and no
  duplicate is ever created;
- **unmatched** — no employee: an orphan, the access review's business;
- **disputed** — it matches several employees (or one that another account already holds): never touched,
  a review finding; the people it names get no new account in that target until it is resolved.

The rule (``TargetPolicy.correlation``, default employee id attribute → HRIS ``work_email`` → userName)
runs its steps in order against **all** employees, not only those a target's ``account_when`` names; the
first step that finds anyone decides, and more than one match at that step is a dispute. The userName step
compares the account's userName with the userName the naming policy forms for each employee (without a
collision suffix). Comparisons are case-insensitive.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lifecycle.naming import base_user_name
from lifecycle.policy import CorrelationStep, NamingPolicy
from models.compact import EmployeeFacts
from models.domain import Account

__all__ = ["Situation", "Correlated", "Correlation", "correlate"]


class Situation(str, enum.Enum):
    LINKED = "linked"
    UNLINKED = "unlinked"
    UNMATCHED = "unmatched"
    DISPUTED = "disputed"


@dataclass(frozen=True)
class Correlated:
    """One account's situation: the employee(s) it matched and the step that matched them."""

    account: Account
    situation: Situation
    employee_ids: tuple[str, ...] = ()
    matched_by: CorrelationStep | None = None
    why: str = ""

    @property
    def employee_id(self) -> str | None:
        return self.employee_ids[0] if len(self.employee_ids) == 1 else None


@dataclass
class Correlation:
    """Every account of one target, classified; ``owner`` maps employee id → the account that is theirs
    (linked, or unlinked and to be adopted)."""

    accounts: list[Correlated] = field(default_factory=list)
    owner: dict[str, Correlated] = field(default_factory=dict)

    def of(self, situation: Situation) -> list[Correlated]:
        return [c for c in self.accounts if c.situation is situation]

    @property
    def disputed_employees(self) -> frozenset[str]:
        """Employees named in a dispute: they get no new account in this target until it is resolved."""
        return frozenset(e for c in self.of(Situation.DISPUTED) for e in c.employee_ids)


class _Index:
    """Per step, the compared value (lower-case) → employee ids having it; a step's index is built the first
    time an account reaches that step (an account linked by employee id never needs the userNames formed)."""

    def __init__(self, employees: Iterable[EmployeeFacts], naming: NamingPolicy) -> None:
        self._employees = list(employees)
        self._naming = naming
        self._steps: dict[CorrelationStep, dict[str, set[str]]] = {}

    def get(self, step: CorrelationStep, value: str) -> set[str] | None:
        index = self._steps.get(step)
        if index is None:
            index = self._steps[step] = self._build(step)
        return index.get(value)

    def _build(self, step: CorrelationStep) -> dict[str, set[str]]:
        index: dict[str, set[str]] = defaultdict(set)
        for e in self._employees:
            if step == "employee_id":
                value = e.employee_id
            elif step == "email":
                value = (e.work_email or "").strip()
            else:
                value = base_user_name(e, self._naming)
            if value:
                index[value.lower()].add(e.employee_id)
        return index


def _value(account: Account, step: CorrelationStep) -> str:
    raw = {"employee_id": account.employee_id, "email": account.email, "user_name": account.user_name}[step]
    return (raw or "").strip().lower()


def correlate(
    accounts: Iterable[Account],
    employees: Iterable[EmployeeFacts] | None,
    steps: Sequence[CorrelationStep],
    naming: NamingPolicy,
) -> Correlation:
    """Classify every account (module docstring). ``employees=None``: the roster was not read (an incremental
    run that found no account without an employee id): an account carrying an employee id is linked to it."""
    first: list[Correlated] = []
    if employees is None:
        for account in accounts:
            if account.employee_id:
                first.append(Correlated(account, Situation.LINKED, (account.employee_id,), "employee_id"))
            else:
                first.append(Correlated(account, Situation.UNMATCHED, why="matches no employee"))
        return _settle(first)
    index = _Index(employees, naming)
    for account in accounts:
        for step in steps:
            value = _value(account, step)
            found = index.get(step, value) if value else None
            if not found:
                continue
            ids = tuple(sorted(found))
            if len(ids) > 1:
                why = f"matches employees {', '.join(ids)} by {step}"
                first.append(Correlated(account, Situation.DISPUTED, ids, step, why))
            elif step == "employee_id":
                first.append(Correlated(account, Situation.LINKED, ids, step))
            else:
                first.append(Correlated(account, Situation.UNLINKED, ids, step))
            break
        else:
            first.append(Correlated(account, Situation.UNMATCHED, why="matches no employee"))
    return _settle(first)


def _settle(first: list[Correlated]) -> Correlation:
    """One account per employee: a linked account wins; other accounts claiming that employee, or several
    unlinked ones matching one employee, are disputed (linking them would make a duplicate)."""
    claims: dict[str, list[Correlated]] = defaultdict(list)
    for c in first:
        if c.situation in (Situation.LINKED, Situation.UNLINKED):
            claims[c.employee_ids[0]].append(c)
    result = Correlation()
    for c in first:
        if c.situation not in (Situation.LINKED, Situation.UNLINKED):
            result.accounts.append(c)
            continue
        rivals = claims[c.employee_ids[0]]
        linked = [r for r in rivals if r.situation is Situation.LINKED]
        if len(rivals) == 1 or (c.situation is Situation.LINKED and len(linked) == 1):
            result.accounts.append(c)
            result.owner[c.employee_ids[0]] = c
            continue
        others = ", ".join(sorted(r.account.id for r in rivals if r is not c))
        why = f"employee {c.employee_ids[0]} is also matched by account(s) {others}"
        result.accounts.append(Correlated(c.account, Situation.DISPUTED, c.employee_ids, c.matched_by, why))
    return result
