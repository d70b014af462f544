"""Access review findings: what is wrong with who holds what. Pure, no I/O; linear in accounts + memberships.

Only *enabled* accounts are reviewed: a disabled account grants no access, and the leaver path owns its
cleanup. Per enabled account:

* **orphan** — no HR record for its employee id (or no employee id at all). Only this finding is raised.
* **terminated_active** — the employee is a leaver whose disable is due, with the planner's rule
  (:func:`lifecycle.planner.timeline`): status terminated or the termination instant passed, and timing
  "immediate", no termination date, or the termination instant (``termination_date`` at
  ``leaver.termination_time`` local) reached. Only this finding is raised: disabling answers everything.
  A leaver whose termination time lies ahead is not a finding (the leaver flow disables it on time).
* **dormant** — ``last_sign_in`` older than ``review.dormant_days``. An account whose provider records no
  sign-in (``last_sign_in`` None: SCIM core has none, LDAP only with a lastbind overlay or AD's
  ``lastLogonTimestamp``) is *not* dormant — absence of evidence is not evidence of disuse, and flagging
  every such account would drown the campaign.
* **outside_policy** — a membership in a group of ``policy.managed_groups`` the employee is not entitled
  to (not birthright for them), or in a privileged group without a recorded approval. Groups outside
  ``managed_groups`` are granted by hand and are not judged here.
* **sod_conflict** — the account holds both groups of a ``review.sod_conflicts`` pair.
* **recertification** — a privileged group whose latest approval is older than its ``recertify_days``.

Finding ids are stable across runs: ``sha256(kind|account id|group)`` truncated to 16 hex digits (with
``|target`` for a target other than the directory), so the same situation is the same finding in every run,
audit row and campaign.

**Targets** (policy ``targets:``): each target is reviewed with its own view of the policy
(:func:`lifecycle.targets.target_policy`: its birthright; a privileged group is privileged in the target that
holds it, and targets hold none) and the correlation of its accounts (:mod:`lifecycle.correlation`): an
*unmatched* account is an orphan, a *disputed* one a **disputed** finding (never remediated automatically:
only a reviewer's decision touches it), an *unlinked* one is left to the sync, which adopts it. Every finding
names its target.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from lifecycle.actions import DIRECTORY, Action, DisableAccount, RemoveMembership
from lifecycle.birthright import birthright_groups
from lifecycle.correlation import Correlation, Situation
from lifecycle.planner import timeline
from lifecycle.policy import Policy
from models.compact import AccountFacts, EmployeeFacts
from models.domain import EmployeeStatus

__all__ = [
    "FindingKind",
    "Finding",
    "finding_id",
    "find",
    "review_groups",
    "is_disable_due",
    "remediation",
    "reviewer_for",
    "route_reviewers",
    "count_by_kind",
]

# Approvals: employee id -> {privileged group -> when it was (last) approved or re-certified}.
Approvals = Mapping[str, Mapping[str, datetime]]
_NO_APPROVALS: Mapping[str, datetime] = {}


class FindingKind(str, enum.Enum):
    ORPHAN = "orphan"
    TERMINATED_ACTIVE = "terminated_active"
    DORMANT = "dormant"
    OUTSIDE_POLICY = "outside_policy"
    SOD_CONFLICT = "sod_conflict"
    RECERTIFICATION = "recertification"
    DISPUTED = "disputed"


class Finding(BaseModel):
    """One review finding. ``group`` is the group concerned (``a+b`` for a separation-of-duties pair);
    ``revoke_group`` the one a revocation removes. ``detail`` holds ids, groups and dates only."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: FindingKind
    account_id: str
    user_name: str
    employee_id: str | None
    group: str | None = None
    revoke_group: str | None = None
    detail: str
    since: datetime | None = None  # last sign-in (dormant) or approval time (recertification)
    target: str = DIRECTORY  # the provisioning target holding the account


def finding_id(kind: FindingKind, account_id: str, group: str | None = None, target: str = DIRECTORY) -> str:
    """The stable id: sha256 of ``kind|account id|group`` (``|target`` outside the directory), 16 hex digits."""
    where = "" if target == DIRECTORY else f"|{target}"
    return hashlib.sha256(f"{_PREFIX[kind]}{account_id}|{group or ''}{where}".encode()).hexdigest()[:16]


_PREFIX = {kind: f"{kind.value}|" for kind in FindingKind}  # a million ids a review: no enum lookups


def _finding(
    kind: FindingKind,
    account: AccountFacts,
    employee_id: str | None,
    detail: str,
    *,
    group: str | None = None,
    revoke_group: str | None = None,
    since: datetime | None = None,
    target: str = DIRECTORY,
) -> Finding:
    return Finding(
        id=finding_id(kind, account.id, group, target),
        target=target,
        kind=kind,
        account_id=account.id,
        user_name=account.user_name,
        employee_id=employee_id,
        group=group,
        revoke_group=revoke_group if revoke_group is not None else group,
        detail=detail,
        since=since,
    )


def review_groups(policy: Policy) -> frozenset[str]:
    """The groups whose memberships :func:`find` reads: ``policy.managed_groups`` and both groups of every
    ``review.sod_conflicts`` pair. A membership of any other group is granted by hand and raises nothing, so a
    review at scale need not hold it (:func:`engine.review.collect_inventory`)."""
    return policy.managed_groups.union(*policy.review.sod_conflicts)


def is_disable_due(employee: EmployeeFacts, policy: Policy, now: datetime) -> bool:
    """Whether the leaver disable of ``employee`` is due now (the planner's leaver rule)."""
    if employee.termination_date is None and employee.status is not EmployeeStatus.TERMINATED:
        return False  # no termination instant and not terminated: not a leaver (the common case, no timeline)
    tl = timeline(employee, policy)
    terminated_before_start = (
        employee.termination_date is not None
        and employee.hire_date is not None
        and employee.termination_date < employee.hire_date
    )
    leaver = employee.status is EmployeeStatus.TERMINATED or (
        tl.disable_at is not None and not terminated_before_start and now >= tl.disable_at
    )
    if not leaver:
        return False
    immediate = policy.leaver.timing == "immediate" and employee.status is EmployeeStatus.TERMINATED
    return immediate or tl.disable_at is None or now >= tl.disable_at


class _BirthrightCache:
    """Birthright groups (less ``without``) depend only on the matched attributes; thousands of employees
    share a few keys."""

    def __init__(self, policy: Policy, without: frozenset[str] = frozenset()) -> None:
        self.policy, self.without = policy, without
        self.cache: dict[tuple[str | None, ...], frozenset[str]] = {}

    def __call__(self, employee: EmployeeFacts) -> frozenset[str]:
        key = (employee.department, employee.title, employee.location, employee.employment_type)
        groups = self.cache.get(key)
        if groups is None:
            groups = self.cache[key] = birthright_groups(employee, self.policy) - self.without
        return groups


def find(
    employees: Mapping[str, EmployeeFacts],
    accounts: Iterable[AccountFacts],
    approvals: Approvals,
    now: datetime,
    policy: Policy,
    *,
    target: str = DIRECTORY,
    correlation: Correlation | None = None,
) -> list[Finding]:
    """Every finding for ``accounts`` (see the module docstring), in account order then by kind. For a target
    other than the directory: ``policy`` is that target's view and ``correlation`` classifies its accounts."""
    if correlation is not None:
        return _find_correlated(employees, correlation, approvals, now, policy, target)
    review = policy.review
    managed = policy.managed_groups
    privileged = {g.name: g for g in policy.privileged_groups}
    dormant_before = now - timedelta(days=review.dormant_days)
    sod_pairs = [(a, b) for a, b in review.sod_conflicts if a != b]
    sod_groups = {g for pair in sod_pairs for g in pair}
    birthright = _BirthrightCache(policy)
    unprivileged_birthright = _BirthrightCache(policy, without=frozenset(privileged))
    findings: list[Finding] = []
    for account in accounts:
        if not account.active:
            continue
        employee = employees.get(account.employee_id) if account.employee_id else None
        if employee is None:
            findings.append(
                _finding(
                    FindingKind.ORPHAN,
                    account,
                    account.employee_id or None,
                    "enabled account without an HR record",
                )
            )
            continue
        eid = employee.employee_id
        if is_disable_due(employee, policy, now):
            findings.append(
                _finding(
                    FindingKind.TERMINATED_ACTIVE,
                    account,
                    eid,
                    f"leaver still enabled (termination date {employee.termination_date})",
                )
            )
            continue
        if account.last_sign_in is not None and account.last_sign_in < dormant_before:
            findings.append(
                _finding(
                    FindingKind.DORMANT,
                    account,
                    eid,
                    f"no sign-in since {account.last_sign_in.date()} (> {review.dormant_days} days)",
                    since=account.last_sign_in,
                )
            )
        held = account.groups
        judged = managed.intersection(held)
        if judged:  # what a birthright grants and is not privileged raises nothing: most accounts stop here
            judged = judged - unprivileged_birthright(employee)
        approved = approvals.get(eid, _NO_APPROVALS)
        for group in sorted(judged):
            rule = privileged.get(group)
            if rule is None:  # not granted: the birthright's groups left above
                findings.append(
                    _finding(
                        FindingKind.OUTSIDE_POLICY,
                        account,
                        eid,
                        f"member of managed group {group} without a birthright rule for it",
                        group=group,
                    )
                )
                continue
            approved_at = approved.get(group)
            if approved_at is None:
                findings.append(
                    _finding(
                        FindingKind.OUTSIDE_POLICY,
                        account,
                        eid,
                        f"member of privileged group {group} without a recorded approval",
                        group=group,
                    )
                )
            elif approved_at < now - timedelta(days=rule.recertify_days):
                findings.append(
                    _finding(
                        FindingKind.RECERTIFICATION,
                        account,
                        eid,
                        f"approval of {group} from {approved_at.date()} "
                        f"older than {rule.recertify_days} days",
                        group=group,
                        since=approved_at,
                    )
                )
        if not sod_groups.isdisjoint(held):
            for a, b in sod_pairs:
                if a in held and b in held:
                    findings.append(
                        _finding(
                            FindingKind.SOD_CONFLICT,
                            account,
                            eid,
                            f"holds both {a} and {b}",
                            group=f"{a}+{b}",
                            revoke_group=_sod_revoke(a, b, birthright(employee), approved),
                        )
                    )
    return findings


def _find_correlated(
    employees: Mapping[str, EmployeeFacts],
    correlation: Correlation,
    approvals: Approvals,
    now: datetime,
    policy: Policy,
    target: str,
) -> list[Finding]:
    """A target's findings: orphans and disputes from the correlation, the rest as for the directory."""
    findings: list[Finding] = []
    linked: list[AccountFacts] = []
    for c in correlation.accounts:
        if c.situation is Situation.DISPUTED:
            why = f"disputed account: {c.why}; not linked, not changed by the sync"
            findings.append(_finding(FindingKind.DISPUTED, c.account, None, why, target=target))
        elif c.situation is Situation.UNMATCHED and c.account.active:
            why = f"enabled account in {target} without an HR record"
            findings.append(
                _finding(FindingKind.ORPHAN, c.account, c.account.employee_id or None, why, target=target)
            )
        elif c.situation is Situation.LINKED:
            linked.append(c.account)
    for f in find(employees, linked, approvals, now, policy):
        findings.append(
            f.model_copy(update={"id": finding_id(f.kind, f.account_id, f.group, target), "target": target})
        )
    return findings


def _sod_revoke(a: str, b: str, granted: frozenset[str], approved: Mapping[str, datetime]) -> str:
    """Which group of a conflicting pair a revocation removes: the one the employee is not entitled to
    if exactly one is; otherwise the second of the pair as written in the policy."""
    entitled_a, entitled_b = (g in granted or g in approved for g in (a, b))
    if entitled_a and not entitled_b:
        return b
    if entitled_b and not entitled_a:
        return a
    return b


def remediation(finding: Finding) -> Action:
    """The action that revokes a finding's access, applied through :class:`engine.applier.Applier`:
    account findings (orphan, terminated_active, dormant) disable the account; group findings remove the
    membership (``revoke_group``). Orphans without an employee id are keyed ``account:<id>`` in the ledger."""
    employee_id = finding.employee_id or f"account:{finding.account_id}"
    reason = f"access review: {finding.kind.value} finding {finding.id}"
    account_kinds = (
        FindingKind.ORPHAN,
        FindingKind.TERMINATED_ACTIVE,
        FindingKind.DORMANT,
        FindingKind.DISPUTED,
    )
    if finding.kind in account_kinds:
        return DisableAccount(
            employee_id=employee_id, user_name=finding.user_name, reason=reason, target=finding.target
        )
    assert finding.revoke_group is not None
    return RemoveMembership(
        employee_id=employee_id, group=finding.revoke_group, reason=reason, target=finding.target
    )


def reviewer_for(
    finding: Finding, employees: Mapping[str, EmployeeFacts], user_names: Mapping[str, str], policy: Policy
) -> str:
    """The employee's manager (their account's user name) reviews; ``review.fallback_reviewer`` does for
    orphans, employees without a manager, and managers who left, have no enabled account, or are the
    subject themselves. ``user_names`` maps employee id → user name of their *enabled* account."""
    fallback = policy.review.fallback_reviewer
    employee = employees.get(finding.employee_id or "")
    if employee is None or not employee.manager_id or employee.manager_id == employee.employee_id:
        return fallback
    manager = employees.get(employee.manager_id)
    if manager is None or manager.status is EmployeeStatus.TERMINATED:
        return fallback
    return user_names.get(manager.employee_id) or fallback


def route_reviewers(
    findings: Iterable[Finding],
    employees: Mapping[str, EmployeeFacts],
    accounts: Iterable[AccountFacts],
    policy: Policy,
) -> dict[str, str]:
    """Finding id → reviewer for every finding (see :func:`reviewer_for`)."""
    user_names = {a.employee_id: a.user_name for a in accounts if a.active and a.employee_id}
    return {f.id: reviewer_for(f, employees, user_names, policy) for f in findings}


def count_by_kind(findings: Iterable[Finding]) -> dict[str, int]:
    """Number of findings per kind, every kind present (zeros included)."""
    counts = {kind.value: 0 for kind in FindingKind}
    for finding in findings:
        counts[finding.kind.value] += 1
    return counts
