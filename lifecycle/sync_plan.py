"""Plan everyone at once: ``plan_all(snapshot, histories, settled, policy, now) -> SyncPlan``. Pure, no I/O.

The sync (:mod:`engine.sync`) reads the HRIS and the identity provider once into a :class:`Snapshot`, reads
the ledger once (histories and settled keys), and asks this module what to do. On top of the per-employee
planner (:mod:`lifecycle.planner`), planning a whole population decides:

- **user names** across joiners: each joiner sees the names other accounts hold *and* the names joiners planned
  before it in this run take (:class:`TakenNames`, indexed by stem so a joiner only compares with names it can
  collide with);
- **what need not be repeated**: a SCHEDULE when the run has no scheduler (the sync *is* the nightly re-plan);
  tickets, approval requests and schedules the ledger already settled;
- **manager references**: a manager change to a manager who has no account and gets none in this run is left
  out (the IdP cannot point at an account that does not exist yet; it is written once the manager's account
  exists);
- **waves**: joiners whose manager is created in the same run go in a later wave, so the manager reference can
  be resolved when they are created;
- **bad records**: several accounts carrying one employee id, or a record the planner cannot plan, fail that
  employee with a reason; the others go on;
- **targets** (:mod:`lifecycle.targets`): each person's plan covers the directory and every target the policy
  names, from what correlation (:mod:`lifecycle.correlation`) found there: unlinked accounts are adopted
  (``link`` actions, first in the plan); a person named in a dispute gets no new account in that target.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from lifecycle.actions import DIRECTORY, Action, ActionKind, Plan, UpdateAccount, describe_changes
from lifecycle.correlation import Correlated, Correlation, Situation
from lifecycle.naming import base_user_name
from lifecycle.notices import with_notices
from lifecycle.planner import History, plan
from lifecycle.policy import Policy
from lifecycle.targets import TargetState, combine, link_action, plan_target, target_policy
from models.domain import Account, Employee

__all__ = [
    "TakenNames",
    "TargetView",
    "Snapshot",
    "Work",
    "SyncPlan",
    "plan_all",
    "plan_person",
    "trim_plan",
    "MAX_WAVES",
]

MAX_WAVES = 64
_NO_HISTORY = History()


def _stem(name: str, domain: str) -> str:
    """A userName reduced to what its collision candidates share (``ada.lovelace3@x`` → ``ada.lovelace``)."""
    return name.lower().removesuffix(f"@{domain}").rstrip("0123456789")


class TakenNames:
    """The IdP's userNames indexed by stem, so each joiner sees only the names that can collide with it
    (the planner lower-cases whatever it is given: 10,000 names per joiner would dominate a full sync)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain.lower()
        self._by_stem: dict[str, set[str]] = defaultdict(set)

    def add(self, name: str) -> None:
        if name:
            self._by_stem[_stem(name, self.domain)].add(name.lower())

    def near(self, base: str) -> frozenset[str]:
        return frozenset(self._by_stem.get(_stem(base, self.domain), ()))


@dataclass
class TargetView:
    """What one sync read of one target other than the directory: employee id → account (with groups), and
    the correlation of all its accounts (``None``: the target could not be read; nothing is planned there)."""

    accounts: dict[str, Account] = field(default_factory=dict)
    correlation: Correlation | None = None
    histories: Mapping[str, History] = field(default_factory=dict)  # this target's disables and enables

    def state(self, employee_id: str) -> TargetState:
        """This person's account there, or the unlinked one to adopt, and whether a dispute names them."""
        assert self.correlation is not None
        disputed = employee_id in self.correlation.disputed_employees
        found = self.correlation.owner.get(employee_id)
        history = self.histories.get(employee_id)
        if found is not None and found.situation is Situation.UNLINKED:
            return TargetState(link=found, disputed=disputed, history=history)
        return TargetState(account=self.accounts.get(employee_id), disputed=disputed, history=history)


@dataclass
class Snapshot:
    """What one sync read: the employees to plan (``None``: no HR record), their directory accounts (with
    groups), the names taken in the IdP, employee ids carried by several accounts, every employee id holding an
    account (in every partition, for manager references), the directory's correlation (``links``: unlinked
    accounts to adopt, by employee id; ``disputed``: people named in a dispute) and the other targets."""

    employees: list[tuple[str, Employee | None]]
    accounts: dict[str, Account]
    taken: TakenNames
    duplicates: set[str] = field(default_factory=set)
    account_holders: set[str] = field(default_factory=set)
    links: dict[str, Correlated] = field(default_factory=dict)
    disputed: frozenset[str] = frozenset()
    targets: dict[str, TargetView] = field(default_factory=dict)


@dataclass(frozen=True)
class Work:
    """One employee's plan, the directory account it was made from, its wave, the accounts the other targets
    hold for this employee (by target name; an account to adopt with its employee id already set), and the
    manager whose account this run creates (``awaits``: their employee id; this work's wave is a later one)."""

    plan: Plan
    account: Account | None
    wave: int = 0
    accounts: dict[str, Account | None] = field(default_factory=dict)
    awaits: str | None = None


@dataclass
class SyncPlan:
    works: list[Work]
    failures: dict[str, str]  # employee id → why they could not be planned

    def batches(self, size: int) -> list[list[Work]]:
        """The works wave by wave, cut into batches of ``size``. A batch may hold the end of one wave and the
        start of the next: the applier creates a batch's accounts wave by wave (a manager before their
        reports), so waves need not cost partial batches (each batch writes each group once)."""
        ordered = sorted(self.works, key=lambda w: w.wave)  # stable: the planning order within a wave
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def plan_all(
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    *,
    histories: Mapping[str, History],
    settled: set[str],
    unsettled: Iterable[str] = (),
    schedules: bool = True,
    people: Mapping[str, Employee] | None = None,
    sent: frozenset[str] = frozenset(),
    adopt_before: date | None = None,
) -> SyncPlan:
    """Plan every employee of ``snapshot`` (module docstring). ``settled``: ledger keys of side effects that
    need not be attempted again; ``unsettled``: employees whose ledger an earlier run left open (their plan is
    kept even when empty, so the applier settles it); ``schedules``: whether this run can book SCHEDULEs;
    ``people``: employees by id, managers included, to plan the notifications with (:mod:`lifecycle.notices`;
    None: none are planned), ``sent``: the notifications already sent;
    ``adopt_before``: the adoption date (:func:`lifecycle.planner.plan`)."""
    failures: dict[str, str] = {}
    planned: list[tuple[Plan, Account | None, Employee, dict[str, Account | None]]] = []
    views = {name: target_policy(policy, t) for name, t in policy.targets.items()}
    for employee_id, employee in snapshot.employees:
        if employee is None:
            continue  # no HR record: an orphan account is the access review's business
        if employee_id in snapshot.duplicates:
            failures[employee_id] = "several accounts carry this employee id; link them by hand"
            continue
        try:
            result, account, accounts = plan_person(
                employee, snapshot, policy, now, histories, views=views, adopt_before=adopt_before
            )
            if people is not None:
                manager = people.get(employee.manager_id) if employee.manager_id else None
                result = with_notices(result, employee, account, manager, policy, now, sent=sent)
        except Exception as exc:  # noqa: BLE001 - one unplannable record must not stop 10,000 others
            failures[employee_id] = f"planning failed: {type(exc).__name__}: {exc}"
            continue
        for action in result.of_kind(ActionKind.CREATE_ACCOUNT):
            if action.target == DIRECTORY:
                snapshot.taken.add(action.subject)  # the next joiner with the same name gets the next suffix
        planned.append((result, account, employee, accounts))
    creating = {
        p.employee_id: e
        for p, _, e, _ in planned
        if any(a.target == DIRECTORY for a in p.of_kind(ActionKind.CREATE_ACCOUNT))
    }
    holders = snapshot.account_holders | set(creating)
    keep_empty = set(unsettled)
    works: list[Work] = []
    for result, account, employee, accounts in planned:
        trimmed = trim_plan(result, holders, settled, schedules=schedules)
        if trimmed.actions or result.employee_id in keep_empty:  # an empty plan still settles an earlier run
            awaits = employee.manager_id if employee.manager_id in creating else None
            works.append(Work(trimmed, account, _wave(employee, creating), accounts, awaits))
    return SyncPlan(works=works, failures=failures)


def plan_person(
    employee: Employee,
    snapshot: Snapshot,
    policy: Policy,
    now: datetime,
    histories: Mapping[str, History],
    *,
    views: Mapping[str, Policy] | None = None,
    adopt_before: date | None = None,
) -> tuple[Plan, Account | None, dict[str, Account | None]]:
    """One person's plan over the directory and every target, the directory account it acts on and the
    target accounts (adopted ones with their employee id set). ``views``: :func:`target_policy` per target;
    ``adopt_before``: the adoption date of the company's existing staff (:func:`lifecycle.planner.plan`)."""
    if views is None:
        views = {name: target_policy(policy, t) for name, t in policy.targets.items()}
    employee_id = employee.employee_id
    found = snapshot.links.get(employee_id)
    account = snapshot.accounts.get(employee_id)
    links: list[Action] = []
    if found is not None:
        links.append(link_action(employee_id, DIRECTORY, found))
        account = found.account.model_copy(update={"employee_id": employee_id})
    if account is None and employee_id in snapshot.disputed:
        directory = Plan(
            employee_id=employee_id,
            event="none",
            skipped_reason="named in a disputed directory account; no account until the dispute is resolved",
        )
    else:
        near = (
            frozenset()
            if account is not None
            else snapshot.taken.near(base_user_name(employee, policy.naming))
        )
        directory = plan(
            employee,
            account,
            policy,
            now,
            taken_user_names=near,
            history=histories.get(employee_id, _NO_HISTORY),
            adopt_before=adopt_before,
        )
    directory = directory.with_actions([*links, *directory.actions])
    targeted: list[Action] = []
    accounts: dict[str, Account | None] = {}
    for name, target in policy.targets.items():
        view = snapshot.targets.get(name)
        if view is None or view.correlation is None:
            continue  # not read (unreachable): nothing is planned there this run
        state = view.state(employee_id)
        accounts[name] = (
            state.link.account.model_copy(update={"employee_id": employee_id})
            if state.link is not None
            else state.account
        )
        targeted += plan_target(
            employee,
            name,
            target,
            views[name],
            state,
            now,
            directory=directory,
            directory_account=account,
        )
    return combine(directory, targeted), account, accounts


def trim_plan(result: Plan, holders: set[str], settled: set[str], *, schedules: bool) -> Plan:
    """``result`` without what this run need not do (module docstring). ``holders``: employee ids that hold
    an account or get one in this run (manager references)."""
    actions = [kept for a in result.actions if (kept := _needed(a, holders, settled, schedules=schedules))]
    return result.with_actions(actions)


def _needed(action: Action, holders: set[str], settled: set[str], *, schedules: bool) -> Action | None:
    """``action`` as this run should apply it, or None to leave it out (module docstring)."""
    if action.kind is ActionKind.SCHEDULE and not schedules:
        return None
    if action.kind in (ActionKind.OPEN_TICKET, ActionKind.REQUEST_APPROVAL, ActionKind.SCHEDULE):
        return None if action.key in settled else action
    if isinstance(action, UpdateAccount):
        manager = action.changes.get("manager_id")
        if manager and manager not in holders:
            changes = {k: v for k, v in action.changes.items() if k != "manager_id"}
            if not changes:
                return None
            previous = {k: v for k, v in action.previous.items() if k != "manager_id"}
            reason = describe_changes(changes, previous)
            return action.model_copy(update={"changes": changes, "previous": previous, "reason": reason})
    return action


def _wave(employee: Employee, creating: Mapping[str, Employee]) -> int:
    """0, or one more than the wave of a manager whose account this run creates."""
    depth, manager = 0, employee.manager_id
    while manager is not None and manager in creating and depth < MAX_WAVES:
        depth += 1
        manager = creating[manager].manager_id
    return depth
